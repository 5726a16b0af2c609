"""Tests of the bench's own parts (no servers): ``.venv/bin/pytest bench``."""

from __future__ import annotations

import math
import subprocess
import sys
import time
from pathlib import Path

import orjson
import pytest

import configs
from procs import cpu_seconds, process_tree, rss_bytes, wait_quiet
from report import goals, scaling_goal, scaling_table
from results import FAILED, OK, Cell, median_cell, one_line
from run import HAND_MARKER, _span_exports, kept_by_hand, parse_args, rounds_for
from scenarios import PROBE_SCENARIO, Scenario, full_matrix, load_expected
from stream_probe import _HttpReader
from validate import Invalid, check_answer, parse_sse
from wrkrun import WrkError, parse_wrk

WRK_OUTPUT = """\
Running 10s test @ http://127.0.0.1:4000/v1/chat/completions
  1 threads and 64 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency    15.65ms   12.00ms  79.00ms   80.00%
    Req/Sec     3.66k   200.00     4.00k    70.00%
  Latency Distribution
     50%  540.00us
     75%   16.00ms
     90%   30.00ms
     99%    1.20s
  36391 requests in 10.00s, 30.00MB read
  Socket errors: connect 0, read 2, write 0, timeout 3
  Non-2xx or 3xx responses: 7
Requests/sec:   3639.10
Transfer/sec:      3.00MB
"""

CHAT = Scenario("chat", stream=False, slow=False, connections=1)
CHAT_STREAM = Scenario("chat", stream=True, slow=False, connections=16)
RESPONSES = Scenario("responses", stream=False, slow=False, connections=1)
RESPONSES_STREAM = Scenario("responses", stream=True, slow=False, connections=16)
MOCK = configs.MOCK_DIR


def test_wrk_report_is_read_with_units_and_errors() -> None:
    result = parse_wrk(WRK_OUTPUT)
    assert (result.requests, result.seconds, result.rps) == (36391, 10.0, 3639.10)
    assert result.p50_ms == pytest.approx(0.54)
    assert result.p99_ms == pytest.approx(1200.0)
    assert (result.non_2xx, result.socket_errors, result.timeouts, result.errors) == (7, 2, 3, 12)


def test_wrk_report_without_percentiles_is_an_error() -> None:
    with pytest.raises(WrkError):
        parse_wrk(WRK_OUTPUT.replace("     99%    1.20s\n", ""))


def test_nginx_quote_escapes_what_nginx_unescapes() -> None:
    assert configs.nginx_quote("it's a \\ \n") == "'it\\'s a \\\\ \\n'"
    with pytest.raises(ValueError):
        configs.nginx_quote("costs $5")


def test_render_refuses_a_template_field_without_value(tmp_path: Path) -> None:
    template = tmp_path / "t.tmpl"
    template.write_text("listen {{PORT}}; root {{ROOT}};")
    assert configs.render(template, {"PORT": "80", "ROOT": "/x"}) == "listen 80; root /x;"
    with pytest.raises(KeyError, match="ROOT"):
        configs.render(template, {"PORT": "80"})


def test_paced_stream_sleeps_between_frames_not_before_the_first() -> None:
    sse = (MOCK / "chat-stream.sse").read_text()
    frames = configs.sse_frames(sse)
    directives = configs.echo_stream(sse, 0.02)
    assert len(frames) == 23  # role, 19 content chunks, finish, usage, [DONE]
    assert directives.count("echo_flush;") == 23
    assert directives.count("echo_sleep 0.02;") == 22
    assert not directives.startswith("echo_sleep")


def test_canned_answers_are_right_answers() -> None:
    expected = load_expected()
    for scenario, name in (
        (CHAT, "chat.json"),
        (RESPONSES, "responses.json"),
        (CHAT_STREAM, "chat-stream.sse"),
        (RESPONSES_STREAM, "responses-stream.sse"),
    ):
        check_answer(200, (MOCK / name).read_text(), scenario, expected, billed=False)


def test_a_gateway_answer_needs_the_exact_cost() -> None:
    expected = load_expected()
    body = orjson.loads((MOCK / "chat.json").read_bytes())
    with pytest.raises(Invalid, match="cost"):
        check_answer(200, orjson.dumps(body).decode(), CHAT, expected, billed=True)
    body["usage"]["cost"] = 31 * 0.15e-6 + 19 * 0.6e-6
    check_answer(200, orjson.dumps(body).decode(), CHAT, expected, billed=True)
    body["usage"]["cost"] = 1.6e-05
    with pytest.raises(Invalid, match="cost"):
        check_answer(200, orjson.dumps(body).decode(), CHAT, expected, billed=True)


def test_wrong_text_status_or_truncated_stream_is_invalid() -> None:
    expected = load_expected()
    chat = (MOCK / "chat.json").read_text()
    with pytest.raises(Invalid, match="HTTP 502"):
        check_answer(502, chat, CHAT, expected, billed=False)
    with pytest.raises(Invalid, match="text"):
        check_answer(200, chat.replace("canned", "cached"), CHAT, expected, billed=False)
    stream = (MOCK / "chat-stream.sse").read_text()
    with pytest.raises(Invalid, match="DONE"):
        check_answer(200, stream.replace("data: [DONE]\n\n", ""), CHAT_STREAM, expected, billed=False)
    responses = (MOCK / "responses-stream.sse").read_text()
    cut = responses[: responses.index("event: response.completed")]
    with pytest.raises(Invalid, match="completed"):
        check_answer(200, cut, RESPONSES_STREAM, expected, billed=False)


def test_sse_parser_reads_named_events_and_crlf() -> None:
    body = "event: a\r\ndata: 1\r\n\r\ndata: x\ndata: y\n\n: comment\n\n"
    assert parse_sse(body) == [("a", "1"), (None, "x\ny")]


def test_http_reader_reassembles_a_chunked_body_fed_in_pieces() -> None:
    reader = _HttpReader()
    raw = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n7\r\n, world\r\n0\r\n\r\n"
    for index in range(0, len(raw), 3):
        reader.feed(raw[index : index + 3])
    assert (reader.status, bytes(reader.payload), reader.finished) == (200, b"hello, world", True)


def test_http_reader_ends_a_body_with_content_length() -> None:
    reader = _HttpReader()
    reader.feed(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 4\r\n\r\nbo")
    assert not reader.finished
    reader.feed(b"dy")
    assert (reader.status, bytes(reader.payload), reader.finished) == (502, b"body", True)


def test_matrix_routes_each_scenario_to_its_own_mock_prefix() -> None:
    matrix = full_matrix()
    assert len({s.key for s in matrix}) == len(matrix) == 12
    for scenario in matrix:
        assert scenario.model.startswith("bench/")
        assert orjson.loads(scenario.body())["model"] == scenario.model
    assert {s.prefix for s in matrix} == {"", "/stream", "/slow", "/slow-stream"}
    assert (PROBE_SCENARIO.prefix, PROBE_SCENARIO.model) == ("/paced", "bench/paced")


def test_median_cell_takes_medians_and_keeps_a_failure() -> None:
    cells = [Cell("chat-c64", "gateway", rps=r, cpu_us=c) for r, c in ((1, 30.0), (3, 10.0), (2, 20.0))]
    merged = median_cell(cells)
    assert (merged.rps, merged.cpu_us, merged.status) == (2, 20.0, OK)
    cells.append(Cell("chat-c64", "gateway", status=FAILED, note="boom"))
    assert median_cell(cells).status == FAILED


def test_goals_compare_the_gateway_with_litellm_and_direct() -> None:
    cells = {
        ("chat-c64", "gateway"): Cell("chat-c64", "gateway", rps=5000, cpu_us=200),
        ("chat-c64", "litellm"): Cell("chat-c64", "litellm", rps=70, cpu_us=12000),
        ("chat-c1", "gateway"): Cell("chat-c1", "gateway", p99_ms=2.5),
        ("chat-c1", "direct"): Cell("chat-c1", "direct", p99_ms=0.1),
    }
    verdicts = {g.goal: g.verdict for g in goals(cells, [], [])}
    assert verdicts["CPU per chat request at 64 connections ≤ 250 µs"] == "pass"
    assert verdicts["≥ 40x less CPU than LiteLLM (chat, 64 connections)"] == "pass"
    assert verdicts["added p99 at one connection ≤ 1 ms (chat)"] == "FAIL"


def test_the_one_connection_goal_shows_what_nginx_adds_in_the_same_run() -> None:
    cells = {
        ("chat-c1", "gateway"): Cell("chat-c1", "gateway", p99_ms=1.3),
        ("chat-c1", "direct"): Cell("chat-c1", "direct", p99_ms=0.05),
        ("chat-c1", "nginx"): Cell("chat-c1", "nginx", p99_ms=1.15),
        ("responses-c1", "gateway"): Cell("responses-c1", "gateway", p99_ms=0.9),
        ("responses-c1", "direct"): Cell("responses-c1", "direct", p99_ms=0.05),
    }
    measured = {g.goal: (g.measured, g.verdict) for g in goals(cells, [], [])}
    assert measured["added p99 at one connection ≤ 1 ms (chat)"] == ("1.25 ms (nginx adds 1.10 ms)", "FAIL")
    assert measured["added p99 at one connection ≤ 1 ms (responses)"] == ("0.85 ms", "pass")


def test_scaling_goal_compares_requests_per_busy_core() -> None:
    one = Cell("chat-c64", "gateway", rps=5000, cpu_us=190)  # 0.95 busy cores
    linear = Cell("chat-c64", "gateway-w2", rps=9000, cpu_us=195)  # 1.76 busy cores
    assert scaling_goal([one, linear]).verdict == "pass"
    assert "1.80x one worker" in scaling_goal([one, linear]).measured
    contended = Cell("chat-c64", "gateway-w2", rps=6000, cpu_us=300)  # each request costs more
    assert scaling_goal([one, contended]).verdict == "FAIL"
    assert scaling_goal([one, Cell("chat-c64", "gateway-w2", status=FAILED)]).verdict == "FAIL"
    assert "| gateway-w2 | FAILED |" in scaling_table([one, Cell("chat-c64", "gateway-w2", status=FAILED)])


def test_the_one_connection_cells_get_at_least_three_rounds() -> None:
    assert rounds_for("chat-c1", 1) == 3 and rounds_for("responses-c1", 1) == 3
    assert rounds_for("chat-c1", 5) == 5
    assert rounds_for("chat-c64", 1) == 1


def test_scaling_goal_compares_with_one_worker_on_the_same_cores_when_measured() -> None:
    alone = Cell("chat-c64", "gateway", rps=5000, cpu_us=200)  # 1.00 busy core, 5,000 per core
    shared = Cell("chat-c64", "gateway-w1", rps=3500, cpu_us=280)  # sharing cores with the load costs CPU
    two = Cell("chat-c64", "gateway-w2", rps=6000, cpu_us=285)  # per core 3,509: like one worker there
    goal = scaling_goal([alone, shared, two])
    assert goal.verdict == "pass"
    assert goal.measured == (
        "6,000 req/s on 1.71 busy cores = 1.20x one worker; per core 98% of one worker on the same cores "
        "(70% of one alone on core 0)"
    )
    bottleneck = Cell("chat-c64", "gateway-w2", rps=6000, cpu_us=330)  # more CPU per request than w1 there
    assert scaling_goal([alone, shared, bottleneck]).verdict == "FAIL"


def test_quick_and_partial_runs_skip_the_scale_out_step() -> None:
    assert parse_args(["--quick"]).no_scaling
    assert parse_args(["--only", "chat-c64"]).no_scaling
    assert not parse_args([]).no_scaling
    assert not parse_args(["--only", "scaling"]).no_scaling


def test_one_line_flattens_for_a_table_cell() -> None:
    assert one_line("a |\n b", 10) == "a / b"
    assert len(one_line("x" * 50, 10)) == 10
    assert math.isnan(Cell("s", "t").cpu_us)


BUSY_CHILD = (
    "import time\nend = time.monotonic() + {busy}\nwhile time.monotonic() < end: pass\ntime.sleep(30)"
)


def test_cpu_and_rss_are_summed_over_the_process_tree() -> None:
    script = (
        f"import subprocess, sys; subprocess.run([sys.executable, '-c', {BUSY_CHILD.format(busy=0.5)!r}])"
    )
    parent = subprocess.Popen([sys.executable, "-c", script])
    try:
        deadline = time.monotonic() + 10
        while len(process_tree(parent.pid)) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(process_tree(parent.pid)) == 2
        while cpu_seconds(parent.pid) < 0.4 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert cpu_seconds(parent.pid) >= 0.4  # the child's busy half second counts for the parent
        assert rss_bytes(parent.pid) > 2 * 5 * 1024 * 1024  # two Python interpreters
    finally:
        for pid in process_tree(parent.pid)[1:]:
            subprocess.run(["kill", str(pid)], check=False)
        parent.kill()
        parent.wait()


def test_wait_quiet_waits_for_the_busy_spell_to_end() -> None:
    child = subprocess.Popen([sys.executable, "-c", BUSY_CHILD.format(busy=1.0)])
    try:
        time.sleep(0.2)
        waited = wait_quiet(child.pid, window=0.2, limit=10.0)
        assert 0.4 <= waited < 10.0
        assert cpu_seconds(child.pid) >= 0.9
        assert wait_quiet(child.pid, window=0.2, limit=10.0) < 0.1
    finally:
        child.kill()
        child.wait()


def test_a_run_keeps_the_hand_measured_sections_of_the_performance_doc(tmp_path: Path) -> None:
    doc = tmp_path / "performance.md"
    assert kept_by_hand(doc) == ""  # no doc yet
    doc.write_text("# Performance\n\nold generated tables\n")
    assert kept_by_hand(doc) == ""  # nothing measured by hand
    doc.write_text(f"# Performance\n\nold tables\n\n{HAND_MARKER}\n\n## Traces\n\n| a | b |\n")
    assert kept_by_hand(doc) == f"\n{HAND_MARKER}\n\n## Traces\n\n| a | b |\n"


def test_base_adds_an_interleaved_target_and_never_writes_the_doc(tmp_path: Path) -> None:
    src = Path(__file__).resolve().parent.parent / "src"
    args = parse_args(["--base", str(src), "--targets", "direct,gateway"])
    assert args.targets.split(",") == ["direct", "gateway", "base"]
    assert args.no_docs
    assert not parse_args([]).no_docs
    with pytest.raises(SystemExit):
        parse_args(["--base", str(tmp_path)])  # no aistats_gateway package there


def test_a_postgres_run_never_replaces_the_sqlite_doc_or_baseline() -> None:
    assert parse_args([]).database == "sqlite"
    args = parse_args(["--database", "postgres"])
    assert args.database == "postgres" and args.no_docs
    with pytest.raises(SystemExit):
        parse_args(["--database", "postgres", "--save-baseline"])
    with pytest.raises(SystemExit):
        parse_args(["--database", "mysql"])


def test_postgres_for_bench_pins_the_server_to_the_load_core_and_puts_it_back() -> None:
    """Against the machine's Postgres (skipped without one): pinned inside, restored after, and
    the run's databases dropped."""
    import asyncio
    import os
    import socket

    import database

    try:
        socket.create_connection((database.PG_HOST, database.PG_PORT), timeout=0.5).close()
    except OSError:
        pytest.skip("no Postgres on this machine")
    pids = database.postgres_pids()
    if not pids or os.geteuid() != 0:
        pytest.skip("pinning Postgres needs its processes visible and root")
    before = {pid: os.sched_getaffinity(pid) for pid in pids}
    with database.PostgresForBench(core=1) as postgres:
        assert "pinned to core 1" in postgres.note
        assert all(os.sched_getaffinity(pid) == {1} for pid in pids if pid in database.postgres_pids())
        url = postgres.database_url("probe")
        name = url.rsplit("/", 1)[1]

    async def exists() -> bool:
        import asyncpg

        conn = await asyncpg.connect(
            host=database.PG_HOST, port=database.PG_PORT, user=database.PG_USER, database=database.PG_ADMIN_DB
        )
        try:
            return bool(await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name))
        finally:
            await conn.close()

    assert not asyncio.run(exists())
    for pid, cores in before.items():
        if pid in database.postgres_pids():
            assert os.sched_getaffinity(pid) == cores


def test_the_traced_gateway_counts_its_span_exports_from_the_mocks_log(tmp_path: Path) -> None:
    assert _span_exports(tmp_path) == 0, "no sink log: nothing reached it"
    (tmp_path / "mock").mkdir()
    (tmp_path / "mock" / "traces.log").write_text('127.0.0.1 - - "POST /v1/traces" 200\n' * 3)
    assert _span_exports(tmp_path) == 3
