"""Configuration: a YAML file plus environment variables, validated once at start-up.

Where a value comes from, highest first:

1. an explicit environment variable (``AISTATS_DATABASE_URL``, ``AISTATS_REDIS_URL``,
   ``AISTATS_DATA_DIR``, ``AISTATS_KEY_PEPPER``, ``AISTATS_ADMIN_TOKEN``, ``AISTATS_HOST``,
   ``AISTATS_PORT``, ``AISTATS_WORKERS``, ``AISTATS_LOG_LEVEL``, ``AISTATS_OTEL_ENDPOINT``,
   ``AISTATS_BYOK_MASTER_KEYS``
   (environment only)); a variable set to the empty
   string counts as unset;
2. the config file (``database_url``, ``redis_url``, ``data_dir``, ``key_pepper``, ``admin_token``,
   ``log_level``,
   ``server: {host, port, workers}``), given by ``load_settings(config_path)`` or ``AISTATS_CONFIG``;
3. the defaults: data dir ``./data`` (relative to the working directory), SQLite database
   ``<data_dir>/gateway.db``, ``127.0.0.1:8080``, one worker, log level ``info``.

A relative ``data_dir`` in the file is relative to the file's directory; from the environment
it is relative to the working directory. Command-line flags (``--host`` …) are applied on top by
the CLI with ``dataclasses.replace``.

Every string in the file may use ``${VAR}`` (empty when unset) or ``${VAR:-default}`` (default
when unset or empty); ``$${`` is a literal ``${``.

Providers ``openai``, ``anthropic``, ``google-ai-studio`` and ``xai`` always exist. A config
entry of the same name replaces one; what it leaves out (type, ``base_url``, ``api_key``) still
comes from the usual variables (``OPENAI_API_KEY``, ``OPENAI_BASE_URL`` …), so a key set in the
environment is enough to activate a provider.

Every error is a :class:`ConfigError` naming the offending key, and never echoes a secret.
"""

from __future__ import annotations

import datetime as dt
import os
import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

from .byok.crypto import MASTER_KEYS_ENV, MasterKey, MasterKeyError, parse_master_keys
from .byok.fee import NO_FEE, ByokFee, FeeError
from .money import METERS, TIER_CONDITIONS, PriceError, parse_price

PROVIDER_TYPES = ("anthropic", "google", "openai", "openai_compatible", "xai")
MIN_ADMIN_TOKEN_CHARS = 32
LOG_LEVELS = ("critical", "error", "warning", "info", "debug", "trace")

_TOP_LEVEL_KEYS = frozenset(
    {
        "providers",
        "models",
        "server",
        "database_url",
        "redis_url",
        "data_dir",
        "key_pepper",
        "admin_token",
        "log_level",
        "routing",
        "writer",
        "videos",
        "byok",
        "limits",
        "telemetry",
    }
)
_LIMITS_KEYS = frozenset({"free"})
_FREE_TIER_KEYS = frozenset({"requests_per_minute", "requests_per_day", "requests_per_day_topped_up"})
_ROUTING_KEYS = frozenset({"max_attempts", "deadline_s", "breaker"})
_WRITER_KEYS = frozenset({"spool_max_mb", "spool_after_s"})
_VIDEO_DURATIONS = (
    "retention_days",
    "poll_initial_s",
    "poll_max_s",
    "lease_s",
    "tick_s",
    "timeout_s",
    "max_age_s",
)
_VIDEOS_KEYS = frozenset({"storage_dir", *_VIDEO_DURATIONS})
_BREAKER_KEYS = frozenset(
    {"failure_threshold", "window_s", "error_rate_threshold", "min_requests", "open_s", "half_open_probes"}
)
_BYOK_KEYS = frozenset({"fee_percent"})
_TELEMETRY_KEYS = frozenset(
    {"otlp_endpoint", "otlp_headers", "service_name", "sample_ratio", "export_delay_s", "metrics_snapshot_s"}
)
_SERVER_KEYS = frozenset({"host", "port", "workers"})
_PROVIDER_KEYS = frozenset({"type", "base_url", "api_key", "api_key_env", "timeouts", "headers", "formats"})
# The wire formats a provider type can speak; ``formats:`` in the config may narrow them.
PROVIDER_FORMATS: dict[str, tuple[str, ...]] = {
    "openai": ("chat", "responses"),
    "xai": ("chat", "responses"),
    "openai_compatible": ("chat",),
    "anthropic": ("messages",),
    "google": ("gemini",),
}
_TIMEOUT_KEYS = frozenset({"connect", "read", "first_byte", "idle"})
_MODEL_KEYS = frozenset({"name", "created", "context_length", "max_output_tokens", "providers", "kind"})
# What a model does; each kind is served by its own surface (routing.SURFACE_KINDS).
MODEL_KINDS = ("chat", "embeddings", "images", "videos")
_ROUTE_KEYS = frozenset(
    {"provider", "model", "price", "context_length", "max_output_tokens", "supported_parameters"}
)
# What a route's ``supported_parameters`` may list: the request features routing can require
# (``provider.require_parameters``); ``response_format`` stands for structured output.
ROUTE_PARAMETERS = frozenset(
    {
        "tools",
        "tool_choice",
        "response_format",
        "reasoning",
        "images",
        "stop",
        "seed",
        "logprobs",
        "temperature",
        "top_p",
        "top_k",
        "frequency_penalty",
        "presence_penalty",
        "max_tokens",
    }
)
# A price card (docs/pricing.md): meters, plus ``tiers`` that override them under conditions.
_PRICE_METERS = frozenset(METERS)

_DEFAULT_BASE_URLS = {
    "openai": "https://api.openai.com/v1",
    "anthropic": "https://api.anthropic.com",
    "google": "https://generativelanguage.googleapis.com",
    "xai": "https://api.x.ai/v1",
}


@dataclass(frozen=True)
class _BuiltinProvider:
    type: str
    key_env: str
    base_url_env: str


_BUILTIN_PROVIDERS = {
    "openai": _BuiltinProvider("openai", "OPENAI_API_KEY", "OPENAI_BASE_URL"),
    "anthropic": _BuiltinProvider("anthropic", "ANTHROPIC_API_KEY", "ANTHROPIC_BASE_URL"),
    "google-ai-studio": _BuiltinProvider("google", "GEMINI_API_KEY", "GEMINI_BASE_URL"),
    "xai": _BuiltinProvider("xai", "XAI_API_KEY", "XAI_BASE_URL"),
}

_VAR_TOKEN = re.compile(r"\$\$\{|\$\{([^}]*)\}|\$\{")
_VAR_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_WHOLE_VAR_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-[^}]*)?\}")
_MODEL_ID = re.compile(r"[^\s/]+/[^\s]+")


class ConfigError(Exception):
    """Invalid configuration. ``key`` is the path of the bad value, e.g. ``providers.openai.type``."""

    def __init__(self, key: str, problem: str) -> None:
        super().__init__(f"{key}: {problem}")
        self.key = key
        self.problem = problem


@dataclass(frozen=True)
class ProviderConfig:
    """One upstream provider: where it is, how to authenticate, and its timeouts (seconds)."""

    name: str
    type: str
    base_url: str
    api_key: str | None = None
    api_key_env: str | None = None
    connect_timeout: float = 10.0
    read_timeout: float = 300.0  # a whole non-streamed answer: each gap between reads
    first_byte_timeout: float = 300.0  # until the response headers arrive
    idle_timeout: float = 300.0  # streams: the longest silence between two events
    headers: dict[str, str] = field(default_factory=dict)
    formats: tuple[str, ...] | None = None  # narrows the type's wire formats (e.g. only "responses")

    @property
    def active(self) -> bool:
        """Usable for routing: has a key, or is an OpenAI-compatible server that needs none."""
        return self.type == "openai_compatible" or bool(self.api_key)


@dataclass(frozen=True)
class RoutingSettings:
    """Failover limits and circuit-breaker thresholds (``routing:`` in the config)."""

    max_attempts: int = 3  # providers tried per request at most
    deadline_s: float = 600.0  # no new attempt starts after this long
    failure_threshold: int = 5
    window_s: float = 30.0
    error_rate_threshold: float = 0.5
    min_requests: int = 10
    open_s: float = 30.0
    half_open_probes: int = 1


@dataclass(frozen=True)
class WriterSettings:
    """The usage writer's on-disk spool (``writer:`` in the config; docs/deployment.md)."""

    spool_max_mb: int = 256  # per worker process; 0 turns the spool off (records wait in memory)
    spool_after_s: float = 1.0  # a database failing this long moves waiting records to the spool


@dataclass(frozen=True)
class VideoSettings:
    """Async video jobs (``videos:`` in the config): where content is kept and how jobs are polled."""

    storage_dir: Path | None = None  # None: <data_dir>/videos
    retention_days: float = 7.0  # downloaded content is deleted this long after completion
    poll_initial_s: float = 1.0  # first wait between provider polls; doubles up to poll_max_s
    poll_max_s: float = 30.0
    lease_s: float = 300.0  # how long one runner owns a job it is polling (longer than any call)
    tick_s: float = 1.0  # how often the runner looks for due jobs
    timeout_s: float = 60.0  # every provider call (connect + each read)
    max_age_s: float = 6 * 3600.0  # a job still running after this long is failed


@dataclass(frozen=True)
class FreeTierSettings:
    """Per-key limits on ``:free`` models (``limits: {free: …}``; docs/limits.md)."""

    requests_per_minute: int = 20
    requests_per_day: int = 50  # UTC calendar day
    requests_per_day_topped_up: int = 1000  # for workspaces that have ever been granted credits


@dataclass(frozen=True)
class LimitsSettings:
    """Gateway-wide limits (``limits:`` in the config); per-key limits live on the keys."""

    free: FreeTierSettings = field(default_factory=lambda: FreeTierSettings())


@dataclass(frozen=True)
class TelemetrySettings:
    """Traces and the cross-worker metrics (``telemetry:`` in the config; docs/deployment.md).

    Traces are off unless ``otlp_endpoint`` (or ``AISTATS_OTEL_ENDPOINT``) names an OTLP/HTTP
    traces URL; they need the ``otel`` extra (``pip install 'aistats-gateway[otel]'``).
    """

    otlp_endpoint: str | None = None  # e.g. http://collector:4318/v1/traces
    otlp_headers: dict[str, str] = field(default_factory=dict)  # sent with every export
    service_name: str = "aistats-gateway"
    sample_ratio: float = 1.0  # of traces the gateway starts; a client's sampled flag is obeyed
    export_delay_s: float = 2.0  # finished spans are exported in batches this often
    metrics_snapshot_s: float = 1.0  # with --workers N: how often each worker shares its numbers

    @property
    def tracing(self) -> bool:
        return self.otlp_endpoint is not None


@dataclass(frozen=True)
class ByokSettings:
    """Workspaces' own provider keys (docs/byok.md): master keys from ``AISTATS_BYOK_MASTER_KEYS``
    (active first; none: BYOK is off) and the fee (``byok: {fee_percent}``, default 0)."""

    master_keys: tuple[MasterKey, ...] = ()
    fee: ByokFee = NO_FEE


@dataclass(frozen=True)
class Settings:
    """Everything configurable, validated. ``models`` is the config's ``models:`` section."""

    config_path: Path | None
    data_dir: Path
    database_url: str
    redis_url: str | None
    key_pepper: str | None
    admin_token: str | None = None  # AISTATS_ADMIN_TOKEN: the management API's superuser bearer token
    host: str = "127.0.0.1"
    port: int = 8080
    workers: int = 1
    providers: dict[str, ProviderConfig] = field(default_factory=dict)
    models: dict[str, dict] = field(default_factory=dict)
    log_level: str = "info"
    routing: RoutingSettings = field(default_factory=lambda: RoutingSettings())
    writer: WriterSettings = field(default_factory=lambda: WriterSettings())
    videos: VideoSettings = field(default_factory=lambda: VideoSettings())
    byok: ByokSettings = field(default_factory=lambda: ByokSettings())
    limits: LimitsSettings = field(default_factory=lambda: LimitsSettings())
    telemetry: TelemetrySettings = field(default_factory=lambda: TelemetrySettings())


def load_settings(config_path: str | Path | None = None, env: Mapping[str, str] | None = None) -> Settings:
    """Read the config file (argument or ``AISTATS_CONFIG``) and the environment into Settings."""
    env = os.environ if env is None else env
    path = _config_file(config_path, env)
    raw = _read_yaml(path) if path is not None else {}
    unknown = sorted(str(k) for k in raw if k not in _TOP_LEVEL_KEYS)
    if unknown:
        raise ConfigError(
            unknown[0], f"unknown top-level key (expected one of: {', '.join(sorted(_TOP_LEVEL_KEYS))})"
        )
    doc = _interpolate(raw, env, "")

    server = _mapping(doc.get("server"), "server", allowed=_SERVER_KEYS)
    host = _env_or(env, "AISTATS_HOST", server.get("host"), "127.0.0.1")
    if not isinstance(host, str) or not host.strip():
        raise ConfigError(_where(env, "AISTATS_HOST", "server.host"), "must be a non-empty string")
    port = _int_in_range(
        _env_or(env, "AISTATS_PORT", server.get("port"), 8080),
        _where(env, "AISTATS_PORT", "server.port"),
        1,
        65535,
    )
    workers = _int_in_range(
        _env_or(env, "AISTATS_WORKERS", server.get("workers"), 1),
        _where(env, "AISTATS_WORKERS", "server.workers"),
        1,
        None,
    )

    data_dir = _data_dir(env, doc.get("data_dir"), path)
    database_url = _database_url(env, doc.get("database_url"), data_dir)
    redis_url = _redis_url(env, doc.get("redis_url"))
    key_pepper = _optional_str(env, "AISTATS_KEY_PEPPER", doc.get("key_pepper"), "key_pepper")
    admin_token = _optional_str(env, "AISTATS_ADMIN_TOKEN", doc.get("admin_token"), "admin_token")
    if admin_token is not None and len(admin_token) < MIN_ADMIN_TOKEN_CHARS:
        raise ConfigError(
            _where(env, "AISTATS_ADMIN_TOKEN", "admin_token"),
            f"must be at least {MIN_ADMIN_TOKEN_CHARS} characters (e.g. `openssl rand -hex 32`)",
        )
    log_level = _env_or(env, "AISTATS_LOG_LEVEL", doc.get("log_level"), "info")
    if not isinstance(log_level, str) or log_level.lower() not in LOG_LEVELS:
        raise ConfigError(
            _where(env, "AISTATS_LOG_LEVEL", "log_level"),
            f"unknown log level {log_level!r} (expected one of: {', '.join(LOG_LEVELS)})",
        )

    providers = _providers(doc.get("providers"), raw.get("providers"), env)
    models = validate_models(doc.get("models"), providers)
    routing = _routing(doc.get("routing"))
    writer = _writer(doc.get("writer"))
    videos = _videos(doc.get("videos"), path)
    byok = _byok(doc.get("byok"), env)
    limits = _limits(doc.get("limits"))
    telemetry = _telemetry(doc.get("telemetry"), env)
    return Settings(
        config_path=path,
        data_dir=data_dir,
        database_url=database_url,
        redis_url=redis_url,
        key_pepper=key_pepper,
        admin_token=admin_token,
        host=host.strip(),
        port=port,
        workers=workers,
        providers=providers,
        models=models,
        log_level=log_level.lower(),
        routing=routing,
        writer=writer,
        videos=videos,
        byok=byok,
        limits=limits,
        telemetry=telemetry,
    )


def _telemetry(section: object, env: Mapping[str, str]) -> TelemetrySettings:
    body = _mapping(section, "telemetry", allowed=_TELEMETRY_KEYS)
    defaults = TelemetrySettings()
    where = _where(env, "AISTATS_OTEL_ENDPOINT", "telemetry.otlp_endpoint")
    endpoint = _env_or(env, "AISTATS_OTEL_ENDPOINT", body.get("otlp_endpoint"), None)
    if endpoint == "":
        endpoint = None
    if endpoint is not None and (
        not isinstance(endpoint, str)
        or urlsplit(endpoint).scheme not in ("http", "https")
        or not urlsplit(endpoint).netloc
    ):
        raise ConfigError(where, "must be an http(s) URL of an OTLP/HTTP traces endpoint")
    headers = _mapping(body.get("otlp_headers"), "telemetry.otlp_headers")
    if not all(isinstance(k, str) and isinstance(v, str) for k, v in headers.items()):
        raise ConfigError("telemetry.otlp_headers", "must map header names to strings")
    service_name = body.get("service_name", defaults.service_name)
    if not isinstance(service_name, str) or not service_name.strip():
        raise ConfigError("telemetry.service_name", "must be a non-empty string")
    ratio = body.get("sample_ratio", defaults.sample_ratio)
    if isinstance(ratio, bool) or not isinstance(ratio, int | float) or not 0 <= ratio <= 1:
        raise ConfigError("telemetry.sample_ratio", f"must be a number in [0, 1], not {ratio!r}")
    return TelemetrySettings(
        otlp_endpoint=endpoint if isinstance(endpoint, str) else None,
        otlp_headers=dict(headers),
        service_name=service_name.strip(),
        sample_ratio=float(ratio),
        export_delay_s=_positive_number(
            body.get("export_delay_s", defaults.export_delay_s), "telemetry.export_delay_s"
        ),
        metrics_snapshot_s=_positive_number(
            body.get("metrics_snapshot_s", defaults.metrics_snapshot_s), "telemetry.metrics_snapshot_s"
        ),
    )


def _limits(section: object) -> LimitsSettings:
    body = _mapping(section, "limits", allowed=_LIMITS_KEYS)
    free = _mapping(body.get("free"), "limits.free", allowed=_FREE_TIER_KEYS)
    defaults = FreeTierSettings()
    counts = {
        name: _int_in_range(free.get(name, getattr(defaults, name)), f"limits.free.{name}", 1, None)
        for name in ("requests_per_minute", "requests_per_day", "requests_per_day_topped_up")
    }
    return LimitsSettings(free=FreeTierSettings(**counts))


def _byok(section: object, env: Mapping[str, str]) -> ByokSettings:
    body = _mapping(section, "byok", allowed=_BYOK_KEYS)
    try:
        master_keys = parse_master_keys(env.get(MASTER_KEYS_ENV) or "")
    except MasterKeyError as exc:
        raise ConfigError(MASTER_KEYS_ENV, str(exc)) from None
    fee = NO_FEE
    if body.get("fee_percent") is not None:
        try:
            fee = ByokFee.parse(str(body["fee_percent"]))
        except FeeError as exc:
            raise ConfigError("byok.fee_percent", str(exc)) from None
    return ByokSettings(master_keys, fee)


def _videos(section: object, config_path: Path | None) -> VideoSettings:
    body = _mapping(section, "videos", allowed=_VIDEOS_KEYS)
    defaults = VideoSettings()
    storage_dir: Path | None = None
    if body.get("storage_dir") not in (None, ""):
        if not isinstance(body["storage_dir"], str):
            raise ConfigError("videos.storage_dir", "must be a directory path")
        base = config_path.parent if config_path is not None else Path.cwd()
        storage_dir = (base / Path(body["storage_dir"]).expanduser()).resolve()
    seconds = {
        name: _positive_number(body.get(name, getattr(defaults, name)), f"videos.{name}")
        for name in _VIDEO_DURATIONS
    }
    return VideoSettings(storage_dir=storage_dir, **seconds)


def _writer(section: object) -> WriterSettings:
    body = _mapping(section, "writer", allowed=_WRITER_KEYS)
    defaults = WriterSettings()
    return WriterSettings(
        spool_max_mb=_int_in_range(
            body.get("spool_max_mb", defaults.spool_max_mb), "writer.spool_max_mb", 0, None
        ),
        spool_after_s=_positive_number(
            body.get("spool_after_s", defaults.spool_after_s), "writer.spool_after_s"
        ),
    )


def _routing(section: object) -> RoutingSettings:
    body = _mapping(section, "routing", allowed=_ROUTING_KEYS)
    breaker = _mapping(body.get("breaker"), "routing.breaker", allowed=_BREAKER_KEYS)
    defaults = RoutingSettings()
    rate = breaker.get("error_rate_threshold", defaults.error_rate_threshold)
    if isinstance(rate, bool) or not isinstance(rate, int | float) or not 0 < rate <= 1:
        raise ConfigError("routing.breaker.error_rate_threshold", "a number in (0, 1]")
    return RoutingSettings(
        max_attempts=_int_in_range(
            body.get("max_attempts", defaults.max_attempts), "routing.max_attempts", 1, 20
        ),
        deadline_s=_positive_number(body.get("deadline_s", defaults.deadline_s), "routing.deadline_s"),
        failure_threshold=_int_in_range(
            breaker.get("failure_threshold", defaults.failure_threshold),
            "routing.breaker.failure_threshold",
            1,
            None,
        ),
        window_s=_positive_number(breaker.get("window_s", defaults.window_s), "routing.breaker.window_s"),
        error_rate_threshold=float(rate),
        min_requests=_int_in_range(
            breaker.get("min_requests", defaults.min_requests), "routing.breaker.min_requests", 1, None
        ),
        open_s=_positive_number(breaker.get("open_s", defaults.open_s), "routing.breaker.open_s"),
        half_open_probes=_int_in_range(
            breaker.get("half_open_probes", defaults.half_open_probes),
            "routing.breaker.half_open_probes",
            1,
            None,
        ),
    )


def validate_models(raw: object, providers: Collection[str], where: str = "models") -> dict[str, dict]:
    """Check a ``models:`` section (config or built-in catalog); return a copy of it.

    ``providers`` are the names routes may use. ``where`` prefixes the key path in errors.
    """
    if raw is None:
        return {}
    models = _mapping(raw, where)
    result: dict[str, dict] = {}
    for model_id, spec in models.items():
        key = f"{where}.{model_id}"
        if not isinstance(model_id, str) or not _MODEL_ID.fullmatch(model_id):
            raise ConfigError(key, "model id must look like '<owner>/<model>' without spaces")
        body = _mapping(spec, key, allowed=_MODEL_KEYS)
        if "name" in body and (not isinstance(body["name"], str) or not body["name"].strip()):
            raise ConfigError(f"{key}.name", "must be a non-empty string")
        if "created" in body:
            unix_timestamp(body["created"], f"{key}.created")
        if "kind" in body and body["kind"] not in MODEL_KINDS:
            raise ConfigError(f"{key}.kind", f"must be one of {', '.join(MODEL_KINDS)}; got {body['kind']!r}")
        for limit in ("context_length", "max_output_tokens"):
            if limit in body:
                _int_in_range(body[limit], f"{key}.{limit}", 1, None)
        routes = body.get("providers")
        if not isinstance(routes, list) or not routes:
            raise ConfigError(f"{key}.providers", "must be a non-empty list of provider routes")
        checked_routes = [
            _validate_route(route, f"{key}.providers[{i}]", providers, model_id.endswith(":free"))
            for i, route in enumerate(routes)
        ]
        result[model_id] = {**body, "providers": checked_routes}
    return result


def unix_timestamp(value: object, key: str) -> int:
    """A ``created`` value (unix seconds, a YAML date, or ``YYYY-MM-DD``) as unix seconds."""
    if isinstance(value, bool):
        raise ConfigError(key, f"not a unix timestamp or YYYY-MM-DD date: {value!r}")
    if isinstance(value, int):
        if value < 0:
            raise ConfigError(key, "must not be negative")
        return value
    if isinstance(value, str):
        try:
            value = dt.date.fromisoformat(value.strip())
        except ValueError:
            raise ConfigError(key, f"not a unix timestamp or YYYY-MM-DD date: {value!r}") from None
    if isinstance(value, dt.datetime):
        moment = value if value.tzinfo else value.replace(tzinfo=dt.UTC)
        return int(moment.timestamp())
    if isinstance(value, dt.date):
        return int(dt.datetime(value.year, value.month, value.day, tzinfo=dt.UTC).timestamp())
    raise ConfigError(key, f"not a unix timestamp or YYYY-MM-DD date: {value!r}")


# --- file and interpolation ---------------------------------------------------------------


def _config_file(config_path: str | Path | None, env: Mapping[str, str]) -> Path | None:
    source = "config_path"
    if config_path is None or str(config_path) == "":
        config_path = env.get("AISTATS_CONFIG") or None
        source = "AISTATS_CONFIG"
    if config_path is None:
        return None
    path = Path(config_path).expanduser()
    if not path.is_absolute():
        path = Path.cwd() / path
    if not path.is_file():
        raise ConfigError(source, f"config file not found: {path}")
    return path


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(str(path), f"cannot read config file: {exc}") from exc
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(where, f"invalid YAML: {problem}") from exc
    if doc is None:
        return {}
    if not isinstance(doc, dict):
        raise ConfigError(str(path), "the config file must be a mapping of keys to values")
    return doc


def _interpolate(node: Any, env: Mapping[str, str], key: str) -> Any:
    """Replace ``${VAR}`` / ``${VAR:-default}`` in every string value of a YAML tree."""
    if isinstance(node, str):
        return _interpolate_text(node, env, key)
    if isinstance(node, dict):
        return {k: _interpolate(v, env, _join(key, k)) for k, v in node.items()}
    if isinstance(node, list):
        return [_interpolate(v, env, f"{key}[{i}]") for i, v in enumerate(node)]
    return node


def _interpolate_text(text: str, env: Mapping[str, str], key: str) -> str:
    def replace(match: re.Match[str]) -> str:
        token = match.group(0)
        if token == "$${":
            return "${"
        body = match.group(1)
        if body is None:
            raise ConfigError(key, "unterminated '${' (write '$${' for a literal '${')")
        name, has_default, default = body.partition(":-")
        if not _VAR_NAME.fullmatch(name):
            raise ConfigError(key, f"invalid variable reference '${{{body}}}'")
        value = env.get(name)
        if has_default and not value:
            return default
        return value or ""

    return _VAR_TOKEN.sub(replace, text)


def _join(prefix: str, name: object) -> str:
    return f"{prefix}.{name}" if prefix else str(name)


# --- scalar helpers -----------------------------------------------------------------------


def _mapping(value: object, key: str, allowed: frozenset[str] | None = None) -> dict[Any, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ConfigError(key, f"must be a mapping, not {type(value).__name__}")
    if allowed is not None:
        unknown = sorted(str(k) for k in value if k not in allowed)
        if unknown:
            raise ConfigError(
                _join(key, unknown[0]), f"unknown key (expected one of: {', '.join(sorted(allowed))})"
            )
    return value


def _env_or(env: Mapping[str, str], var: str, file_value: object, default: object) -> object:
    """The environment variable when set and non-empty, else the file value, else the default."""
    value = env.get(var)
    if value:
        return value
    return default if file_value is None else file_value


def _where(env: Mapping[str, str], var: str, key: str) -> str:
    return var if env.get(var) else key


def _int_in_range(value: object, key: str, low: int, high: int | None) -> int:
    number: int | None = None
    if isinstance(value, int) and not isinstance(value, bool):
        number = value
    elif isinstance(value, str) and value.strip().isdigit():
        number = int(value.strip())
    if number is None:
        raise ConfigError(key, f"must be a whole number, not {value!r}")
    if number < low or (high is not None and number > high):
        bounds = f"between {low} and {high}" if high is not None else f"at least {low}"
        raise ConfigError(key, f"must be {bounds}, not {number}")
    return number


def _positive_number(value: object, key: str) -> float:
    number: float | None = None
    if isinstance(value, int | float) and not isinstance(value, bool):
        number = float(value)
    elif isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            number = None
    if number is None or not number > 0 or number == float("inf"):
        raise ConfigError(key, f"must be a positive number of seconds, not {value!r}")
    return number


def _optional_str(env: Mapping[str, str], var: str, file_value: object, key: str) -> str | None:
    value = _env_or(env, var, file_value, None)
    if value is None:
        return None
    if not isinstance(value, str):
        raise ConfigError(key, "must be a string")
    return value or None


def _http_url(value: object, key: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(key, "must be an http(s) URL")
    url = value.strip()
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(key, f"must be an http(s) URL, not {url!r}")
    return url.rstrip("/")


# --- storage locations --------------------------------------------------------------------


def _data_dir(env: Mapping[str, str], file_value: object, config_path: Path | None) -> Path:
    if env.get("AISTATS_DATA_DIR"):
        return (Path.cwd() / Path(env["AISTATS_DATA_DIR"]).expanduser()).resolve()
    if file_value is None or file_value == "":
        return (Path.cwd() / "data").resolve()
    if not isinstance(file_value, str):
        raise ConfigError("data_dir", "must be a directory path")
    base = config_path.parent if config_path is not None else Path.cwd()
    return (base / Path(file_value).expanduser()).resolve()


_DB_SCHEMES = {
    "sqlite+aiosqlite": "sqlite+aiosqlite",
    "sqlite": "sqlite+aiosqlite",
    "postgresql+asyncpg": "postgresql+asyncpg",
    "postgresql": "postgresql+asyncpg",
    "postgres": "postgresql+asyncpg",
}


def _database_url(env: Mapping[str, str], file_value: object, data_dir: Path) -> str:
    key = _where(env, "AISTATS_DATABASE_URL", "database_url")
    value = _env_or(env, "AISTATS_DATABASE_URL", file_value or None, None)
    if value is None:
        return f"sqlite+aiosqlite:///{data_dir / 'gateway.db'}"
    if not isinstance(value, str):
        raise ConfigError(key, "must be a database URL string")
    scheme, sep, rest = value.strip().partition("://")
    if not sep or scheme not in _DB_SCHEMES:
        # Only the scheme is shown: the rest of the URL may hold a password.
        raise ConfigError(
            key,
            f"unsupported database URL scheme {scheme!r} (expected sqlite+aiosqlite:// or postgresql+asyncpg://)",
        )
    # The gateway is async: plain sqlite:// and postgresql:// mean their async drivers.
    return f"{_DB_SCHEMES[scheme]}://{rest}"


def _redis_url(env: Mapping[str, str], file_value: object) -> str | None:
    key = _where(env, "AISTATS_REDIS_URL", "redis_url")
    value = _env_or(env, "AISTATS_REDIS_URL", file_value or None, None)
    if value is None:
        return None
    if not isinstance(value, str):
        raise ConfigError(key, "must be a redis:// URL string")
    scheme = value.strip().partition("://")[0]
    if scheme not in ("redis", "rediss", "unix"):
        raise ConfigError(
            key, f"unsupported Redis URL scheme {scheme!r} (expected redis://, rediss:// or unix://)"
        )
    return value.strip()


# --- providers ----------------------------------------------------------------------------


def _providers(section: object, raw_section: object, env: Mapping[str, str]) -> dict[str, ProviderConfig]:
    configured = _mapping(section, "providers")
    raw = raw_section if isinstance(raw_section, dict) else {}
    providers: dict[str, ProviderConfig] = {}
    for name, builtin in _BUILTIN_PROVIDERS.items():
        if name not in configured:
            providers[name] = ProviderConfig(
                name=name,
                type=builtin.type,
                base_url=_http_url(
                    env.get(builtin.base_url_env) or _DEFAULT_BASE_URLS[builtin.type], builtin.base_url_env
                ),
                api_key=env.get(builtin.key_env) or None,
                api_key_env=builtin.key_env,
            )
    for name, spec in configured.items():
        if not isinstance(name, str) or not name.strip() or "/" in name:
            raise ConfigError(f"providers.{name}", "provider name must be a non-empty string without '/'")
        raw_spec = raw.get(name)
        providers[name] = _provider(name, spec, raw_spec if isinstance(raw_spec, dict) else {}, env)
    return providers


def _provider(name: str, spec: object, raw: dict[str, Any], env: Mapping[str, str]) -> ProviderConfig:
    key = f"providers.{name}"
    body = _mapping(spec, key, allowed=_PROVIDER_KEYS)
    builtin = _BUILTIN_PROVIDERS.get(name)

    ptype = body.get("type", builtin.type if builtin else None)
    if ptype is None:
        raise ConfigError(f"{key}.type", f"required (one of: {', '.join(PROVIDER_TYPES)})")
    if ptype not in PROVIDER_TYPES:
        raise ConfigError(
            f"{key}.type", f"unknown provider type {ptype!r} (expected one of: {', '.join(PROVIDER_TYPES)})"
        )

    base_url_value = body.get("base_url")
    if base_url_value is None and builtin is not None:
        base_url_value = env.get(builtin.base_url_env) or None
    if base_url_value is None:
        base_url_value = _DEFAULT_BASE_URLS.get(ptype)
    if base_url_value is None:
        raise ConfigError(f"{key}.base_url", f"required for type {ptype}")
    base_url = _http_url(base_url_value, f"{key}.base_url")

    key_env = body.get("api_key_env")
    if key_env is not None and (not isinstance(key_env, str) or not _VAR_NAME.fullmatch(key_env)):
        raise ConfigError(f"{key}.api_key_env", "must be an environment variable name")
    raw_key = raw.get("api_key")
    if key_env is None and isinstance(raw_key, str):
        ref = _WHOLE_VAR_REF.fullmatch(raw_key.strip())
        key_env = ref.group(1) if ref else None
    if key_env is None and builtin is not None:
        key_env = builtin.key_env

    api_key = body.get("api_key")
    if api_key is None:
        # No key written: the provider's variable (the usual one for built-in names) fills it.
        api_key = env.get(key_env) if key_env else None
    elif not isinstance(api_key, str):
        raise ConfigError(f"{key}.api_key", "must be a string")

    timeouts = _mapping(body.get("timeouts"), f"{key}.timeouts", allowed=_TIMEOUT_KEYS)
    connect_timeout = _positive_number(timeouts.get("connect", 10.0), f"{key}.timeouts.connect")
    read_timeout = _positive_number(timeouts.get("read", 300.0), f"{key}.timeouts.read")
    first_byte_timeout = _positive_number(
        timeouts.get("first_byte", read_timeout), f"{key}.timeouts.first_byte"
    )
    idle_timeout = _positive_number(timeouts.get("idle", read_timeout), f"{key}.timeouts.idle")

    headers: dict[str, str] = {}
    for header, value in _mapping(body.get("headers"), f"{key}.headers").items():
        if not isinstance(header, str) or not header.strip():
            raise ConfigError(f"{key}.headers", "header names must be non-empty strings")
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            raise ConfigError(f"{key}.headers.{header}", "header value must be a string")
        headers[header] = str(value)

    formats = body.get("formats")
    if formats is not None:
        possible = PROVIDER_FORMATS[ptype]
        if not isinstance(formats, list) or not formats or not all(f in possible for f in formats):
            raise ConfigError(
                f"{key}.formats", f"a non-empty list drawn from {list(possible)} (what type {ptype} speaks)"
            )
        formats = tuple(formats)

    return ProviderConfig(
        name=name,
        type=ptype,
        base_url=base_url,
        api_key=(api_key or "").strip() or None,
        api_key_env=key_env,
        connect_timeout=connect_timeout,
        read_timeout=read_timeout,
        first_byte_timeout=first_byte_timeout,
        idle_timeout=idle_timeout,
        headers=headers,
        formats=formats,
    )


# --- models -------------------------------------------------------------------------------


def _validate_route(route: object, key: str, providers: Collection[str], free: bool) -> dict[str, Any]:
    body = _mapping(route, key, allowed=_ROUTE_KEYS)
    if not body:
        raise ConfigError(key, "must be a mapping with provider, model and price")
    provider = body.get("provider")
    if not isinstance(provider, str) or not provider:
        raise ConfigError(f"{key}.provider", "required: the name of a provider")
    if provider not in providers:
        raise ConfigError(
            f"{key}.provider", f"unknown provider {provider!r} (known: {', '.join(sorted(providers))})"
        )
    model = body.get("model")
    if not isinstance(model, str) or not model.strip():
        raise ConfigError(f"{key}.model", "required: the provider's own model id, a string")
    if "price" not in body:
        raise ConfigError(f"{key}.price", "required: {input, output[, cached_input…]} in USD per 1M tokens")
    price = _price(body["price"], f"{key}.price", free)
    for limit in ("context_length", "max_output_tokens"):
        if limit in body:
            _int_in_range(body[limit], f"{key}.{limit}", 1, None)
    if "supported_parameters" in body:
        _supported_parameters(body["supported_parameters"], f"{key}.supported_parameters")
    return {**body, "price": price}


def _price(value: object, key: str, free: bool) -> dict[str, Any]:
    """Check a ``price:`` card: ``input`` and ``output`` required, known meters, valid tiers."""
    price = _meters(value, key, free, allowed=_PRICE_METERS | {"tiers"})
    for part in ("input", "output"):
        if part not in price:
            raise ConfigError(f"{key}.{part}", "required: USD per 1M tokens as a decimal string")
    if "tiers" in price:
        tiers = price["tiers"]
        if not isinstance(tiers, list) or not tiers:
            raise ConfigError(f"{key}.tiers", "must be a non-empty list of {when: {...}, <meter>: price}")
        price["tiers"] = [_price_tier(tier, f"{key}.tiers[{i}]", free) for i, tier in enumerate(tiers)]
    return price


def _price_tier(value: object, key: str, free: bool) -> dict[str, Any]:
    tier = _meters(value, key, free, allowed=_PRICE_METERS | {"when"})
    conditions = ", ".join(TIER_CONDITIONS)
    when = tier.get("when")
    if not isinstance(when, dict) or not when:
        raise ConfigError(f"{key}.when", f"required: a mapping of conditions ({conditions})")
    for name, threshold in when.items():
        if name not in TIER_CONDITIONS:
            raise ConfigError(f"{key}.when.{name}", f"unknown tier condition (expected one of: {conditions})")
        _int_in_range(threshold, f"{key}.when.{name}", 0, None)
    if len(tier) == 1:
        raise ConfigError(key, "a tier must name at least one meter price besides 'when'")
    return {**tier, "when": dict(when)}


def _meters(value: object, key: str, free: bool, allowed: frozenset[str]) -> dict[str, Any]:
    """A copy of a card or tier mapping whose meter prices are checked (other keys left to the caller)."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ConfigError(key, f"must be a mapping of meter prices, not {type(value).__name__}")
    meters = ", ".join(sorted(allowed))
    for name, text in value.items():
        if name not in allowed:
            raise ConfigError(_join(key, name), f"unknown key: not a price meter (expected one of: {meters})")
        if name not in _PRICE_METERS:
            continue
        try:
            nanos = parse_price(text)
        except PriceError as exc:
            raise ConfigError(f"{key}.{name}", str(exc)) from None
        if free and nanos != 0:
            raise ConfigError(f"{key}.{name}", f"a ':free' model must cost 0, not {text!r}")
    return dict(value)


def _supported_parameters(value: object, key: str) -> None:
    names = ", ".join(sorted(ROUTE_PARAMETERS))
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise ConfigError(key, f"must be a list of parameter names drawn from: {names}")
    unknown = [item for item in value if item not in ROUTE_PARAMETERS]
    if unknown:
        raise ConfigError(key, f"unknown parameter {unknown[0]!r} (expected names from: {names})")
