"""Fill in the config templates of the bench (``{{NAME}}`` fields) for one run directory."""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
MOCK_DIR = BENCH_DIR / "mock"
ECHO_MODULE = Path("/usr/lib/nginx/modules/ngx_http_echo_module.so")
PACING_S = 0.02  # the 20 ms of the slow mock and of the paced streams

_FIELD = re.compile(r"\{\{([A-Z_]+)\}\}")


def render(template: Path, values: Mapping[str, str]) -> str:
    """``template`` with every ``{{NAME}}`` replaced; a field without a value is an error."""
    text = template.read_text()
    missing = sorted(set(_FIELD.findall(text)) - set(values))
    if missing:
        raise KeyError(f"{template.name}: no value for {', '.join(missing)}")
    return _FIELD.sub(lambda match: values[match.group(1)], text)


def nginx_quote(text: str) -> str:
    """``text`` as one single-quoted nginx config string (nginx turns ``\\n`` back into a newline)."""
    if "$" in text:
        raise ValueError("a canned body must not contain '$' (nginx would read it as a variable)")
    escaped = text.replace("\\", "\\\\").replace("'", "\\'").replace("\n", "\\n")
    return f"'{escaped}'"


def sse_frames(text: str) -> list[str]:
    """Split an SSE body into its frames, each ending with its blank line."""
    return [frame + "\n\n" for frame in text.split("\n\n") if frame.strip()]


def echo_stream(sse: str, pause: float | None) -> str:
    """echo-module directives sending each SSE frame as its own flushed write.

    With ``pause``, the mock sleeps that long between frames, like a model producing tokens.
    """
    directives = []
    for index, frame in enumerate(sse_frames(sse)):
        if pause and index:
            directives.append(f"echo_sleep {pause:g};")
        directives.append(f"echo -n {nginx_quote(frame)}; echo_flush;")
    return " ".join(directives)


def _prefix_dirs(prefix: Path) -> None:
    for sub in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"):
        (prefix / "tmp" / sub).mkdir(parents=True, exist_ok=True)


def write_mock_conf(prefix: Path, port: int) -> Path:
    """The mock's nginx.conf under ``prefix`` (which also gets its pid, log and temp paths)."""
    _prefix_dirs(prefix)
    chat_json = (MOCK_DIR / "chat.json").read_text().strip()
    responses_json = (MOCK_DIR / "responses.json").read_text().strip()
    chat_sse = (MOCK_DIR / "chat-stream.sse").read_text()
    responses_sse = (MOCK_DIR / "responses-stream.sse").read_text()
    values = {
        "ECHO_MODULE": str(ECHO_MODULE),
        "PREFIX": str(prefix),
        "PORT": str(port),
        "CHAT_JSON": nginx_quote(chat_json),
        "RESPONSES_JSON": nginx_quote(responses_json),
        "CHAT_SSE": echo_stream(chat_sse, None),
        "RESPONSES_SSE": echo_stream(responses_sse, None),
        "CHAT_SSE_PACED": echo_stream(chat_sse, PACING_S),
        "RESPONSES_SSE_PACED": echo_stream(responses_sse, PACING_S),
        "SLOW": f"echo_sleep {PACING_S:g};",
    }
    path = prefix / "nginx.conf"
    path.write_text(render(MOCK_DIR / "nginx.conf.tmpl", values))
    return path


def write_proxy_conf(prefix: Path, port: int, mock_port: int) -> Path:
    """The reference nginx reverse proxy's config under ``prefix``."""
    _prefix_dirs(prefix)
    values = {"PREFIX": str(prefix), "PORT": str(port), "MOCK_PORT": str(mock_port)}
    path = prefix / "nginx.conf"
    path.write_text(render(BENCH_DIR / "nginx-proxy.conf.tmpl", values))
    return path


def write_litellm_conf(directory: Path, mock_port: int) -> Path:
    """LiteLLM's proxy config, pointing every model at a mock prefix."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "litellm.yaml"
    path.write_text(render(BENCH_DIR / "litellm.yaml.tmpl", {"MOCK": f"http://127.0.0.1:{mock_port}"}))
    return path


def write_gateway_conf(directory: Path, mock_port: int) -> Path:
    """The gateway's config: one paid model per mock prefix."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "gateway.yaml"
    path.write_text(render(BENCH_DIR / "gateway.yaml.tmpl", {"MOCK": f"http://127.0.0.1:{mock_port}"}))
    return path
