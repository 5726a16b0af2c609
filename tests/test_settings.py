"""Settings: config file + environment, interpolation, built-in providers, validation messages."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from aistats_gateway.settings import ConfigError, load_settings


@pytest.fixture(autouse=True)
def _isolated_cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Relative defaults (./data) resolve against the working directory.
    monkeypatch.chdir(tmp_path)


def write_config(tmp_path: Path, text: str, name: str = "gateway.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def config_error(tmp_path: Path, text: str, env: dict[str, str] | None = None) -> str:
    with pytest.raises(ConfigError) as info:
        load_settings(write_config(tmp_path, text), env=env or {})
    return str(info.value)


# --- defaults and precedence ---------------------------------------------------------------


def test_defaults_without_file_or_environment(tmp_path: Path) -> None:
    settings = load_settings(env={})
    assert settings.config_path is None
    assert settings.data_dir == tmp_path.resolve() / "data"
    assert settings.database_url == f"sqlite+aiosqlite:///{tmp_path.resolve()}/data/gateway.db"
    assert settings.redis_url is None
    assert settings.key_pepper is None
    assert (settings.host, settings.port, settings.workers, settings.log_level) == (
        "127.0.0.1",
        8080,
        1,
        "info",
    )
    assert settings.models == {}


def test_file_values_are_used_when_no_environment_variable_is_set(tmp_path: Path) -> None:
    path = write_config(
        tmp_path,
        """
        server: {host: 0.0.0.0, port: 9000, workers: 4}
        database_url: postgresql+asyncpg://gw@db:5432/gw
        redis_url: redis://cache:6379/0
        key_pepper: file-pepper
        log_level: DEBUG
        """,
    )
    settings = load_settings(path, env={})
    assert settings.config_path == path
    assert (settings.host, settings.port, settings.workers) == ("0.0.0.0", 9000, 4)
    assert settings.database_url == "postgresql+asyncpg://gw@db:5432/gw"
    assert settings.redis_url == "redis://cache:6379/0"
    assert settings.key_pepper == "file-pepper"
    assert settings.log_level == "debug"


def test_environment_variables_win_over_the_file(tmp_path: Path) -> None:
    path = write_config(
        tmp_path,
        """
        server: {host: 0.0.0.0, port: 9000, workers: 4}
        database_url: postgresql+asyncpg://gw@db:5432/gw
        redis_url: redis://file:6379/0
        key_pepper: file-pepper
        """,
    )
    env = {
        "AISTATS_HOST": "10.0.0.1",
        "AISTATS_PORT": "9100",
        "AISTATS_WORKERS": "2",
        "AISTATS_DATABASE_URL": "sqlite+aiosqlite:///tmp/x.db",
        "AISTATS_REDIS_URL": "redis://env:6379/1",
        "AISTATS_KEY_PEPPER": "env-pepper",
        "AISTATS_LOG_LEVEL": "warning",
    }
    settings = load_settings(path, env=env)
    assert (settings.host, settings.port, settings.workers) == ("10.0.0.1", 9100, 2)
    assert settings.database_url == "sqlite+aiosqlite:///tmp/x.db"
    assert settings.redis_url == "redis://env:6379/1"
    assert settings.key_pepper == "env-pepper"
    assert settings.log_level == "warning"


def test_empty_environment_variable_counts_as_unset(tmp_path: Path) -> None:
    path = write_config(tmp_path, "server: {port: 9000}\n")
    assert load_settings(path, env={"AISTATS_PORT": ""}).port == 9000


def test_config_file_comes_from_aistats_config_when_no_argument(tmp_path: Path) -> None:
    path = write_config(tmp_path, "server: {port: 9001}\n")
    other = write_config(tmp_path, "server: {port: 9002}\n", name="other.yaml")
    assert load_settings(env={"AISTATS_CONFIG": str(path)}).port == 9001
    assert load_settings(other, env={"AISTATS_CONFIG": str(path)}).port == 9002


def test_data_dir_from_file_is_relative_to_the_file_and_sets_the_default_database(tmp_path: Path) -> None:
    conf_dir = tmp_path / "conf"
    conf_dir.mkdir()
    path = write_config(conf_dir, "data_dir: state\n")
    settings = load_settings(path, env={})
    assert settings.data_dir == conf_dir.resolve() / "state"
    assert settings.database_url == f"sqlite+aiosqlite:///{conf_dir.resolve()}/state/gateway.db"


def test_data_dir_from_environment_is_relative_to_the_working_directory(tmp_path: Path) -> None:
    settings = load_settings(env={"AISTATS_DATA_DIR": "var/gw"})
    assert settings.data_dir == tmp_path.resolve() / "var" / "gw"


def test_plain_database_schemes_mean_their_async_drivers(tmp_path: Path) -> None:
    settings = load_settings(env={"AISTATS_DATABASE_URL": "postgresql://u:pw@h/db"})
    assert settings.database_url == "postgresql+asyncpg://u:pw@h/db"
    assert (
        load_settings(env={"AISTATS_DATABASE_URL": "sqlite:///a.db"}).database_url
        == "sqlite+aiosqlite:///a.db"
    )


def test_unsupported_database_url_names_the_variable_without_leaking_the_password() -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(env={"AISTATS_DATABASE_URL": "mysql://root:hunter2@db/gw"})
    assert info.value.key == "AISTATS_DATABASE_URL"
    assert "mysql" in str(info.value)
    assert "hunter2" not in str(info.value)


# --- ${VAR} interpolation ------------------------------------------------------------------


def test_variables_are_interpolated_in_string_values(tmp_path: Path) -> None:
    path = write_config(
        tmp_path,
        """
        server: {host: "${BIND_HOST}", port: "${BIND_PORT:-8181}"}
        redis_url: "redis://${REDIS_HOST:-localhost}:6379/0"
        key_pepper: "literal $${NOT_A_VAR}"
        """,
    )
    settings = load_settings(path, env={"BIND_HOST": "0.0.0.0", "REDIS_HOST": ""})
    assert settings.host == "0.0.0.0"
    assert settings.port == 8181  # default used for an unset variable, then validated as a port
    assert settings.redis_url == "redis://localhost:6379/0"  # default also used for an empty one
    assert settings.key_pepper == "literal ${NOT_A_VAR}"


def test_missing_variable_becomes_empty_and_leaves_the_provider_inactive(tmp_path: Path) -> None:
    path = write_config(tmp_path, 'providers:\n  openai: {api_key: "${MY_OPENAI_KEY}"}\n')
    provider = load_settings(path, env={"OPENAI_API_KEY": "sk-from-env"}).providers["openai"]
    # The config names a key explicitly, so the usual variable does not fill it in.
    assert provider.api_key is None
    assert not provider.active
    assert provider.api_key_env == "MY_OPENAI_KEY"


def test_invalid_variable_reference_names_the_key(tmp_path: Path) -> None:
    message = config_error(tmp_path, 'providers:\n  openai: {api_key: "${OPENAI API KEY}"}\n')
    assert message.startswith("providers.openai.api_key: invalid variable reference")


def test_unterminated_variable_reference_names_the_key(tmp_path: Path) -> None:
    message = config_error(tmp_path, 'key_pepper: "abc${PEPPER"\n')
    assert message.startswith("key_pepper: unterminated '${'")


# --- providers -----------------------------------------------------------------------------


def test_builtin_providers_exist_and_are_inactive_without_keys() -> None:
    providers = load_settings(env={}).providers
    expected = {
        "openai": ("openai", "https://api.openai.com/v1", "OPENAI_API_KEY"),
        "anthropic": ("anthropic", "https://api.anthropic.com", "ANTHROPIC_API_KEY"),
        "google-ai-studio": ("google", "https://generativelanguage.googleapis.com", "GEMINI_API_KEY"),
        "xai": ("xai", "https://api.x.ai/v1", "XAI_API_KEY"),
    }
    assert {name: (p.type, p.base_url, p.api_key_env) for name, p in providers.items()} == expected
    assert not any(p.active for p in providers.values())
    assert all((p.connect_timeout, p.read_timeout) == (10.0, 300.0) for p in providers.values())


def test_builtin_providers_are_active_with_their_usual_variables() -> None:
    env = {
        "OPENAI_API_KEY": "sk-o",
        "ANTHROPIC_API_KEY": "sk-a",
        "GEMINI_API_KEY": "g-key",
        "XAI_API_KEY": "x-key",
        "OPENAI_BASE_URL": "http://127.0.0.1:9999/v1/",
    }
    providers = load_settings(env=env).providers
    assert all(p.active for p in providers.values())
    assert providers["openai"].api_key == "sk-o"
    assert providers["google-ai-studio"].api_key == "g-key"
    assert providers["openai"].base_url == "http://127.0.0.1:9999/v1"


def test_config_entry_replaces_builtin_but_usual_variable_still_fills_the_key(tmp_path: Path) -> None:
    path = write_config(
        tmp_path,
        """
        providers:
          anthropic:
            base_url: http://127.0.0.1:7001
            timeouts: {connect: 2, read: 30.5}
            headers: {anthropic-beta: tools-2024, x-team: 7}
        """,
    )
    provider = load_settings(path, env={"ANTHROPIC_API_KEY": "sk-ant"}).providers["anthropic"]
    assert provider.type == "anthropic"
    assert provider.base_url == "http://127.0.0.1:7001"
    assert provider.api_key == "sk-ant"
    assert provider.api_key_env == "ANTHROPIC_API_KEY"
    assert provider.active
    assert (provider.connect_timeout, provider.read_timeout) == (2.0, 30.5)
    assert provider.headers == {"anthropic-beta": "tools-2024", "x-team": "7"}


def test_openai_compatible_provider_is_active_without_a_key(tmp_path: Path) -> None:
    path = write_config(
        tmp_path,
        """
        providers:
          local-vllm: {type: openai_compatible, base_url: "http://127.0.0.1:8000/v1"}
          groq: {type: openai_compatible, base_url: https://api.groq.com/openai/v1, api_key_env: GROQ_API_KEY}
        """,
    )
    providers = load_settings(path, env={"GROQ_API_KEY": "gsk"}).providers
    assert providers["local-vllm"].active
    assert providers["local-vllm"].api_key is None
    assert providers["groq"].api_key == "gsk"
    assert {"openai", "anthropic", "google-ai-studio", "xai"} <= providers.keys()


def test_unknown_provider_type_message_lists_the_types(tmp_path: Path) -> None:
    message = config_error(tmp_path, "providers:\n  openai: {type: foo}\n")
    assert message == (
        "providers.openai.type: unknown provider type 'foo' "
        "(expected one of: anthropic, google, openai, openai_compatible, xai)"
    )


def test_custom_provider_needs_a_type(tmp_path: Path) -> None:
    message = config_error(tmp_path, "providers:\n  mine: {base_url: http://x}\n")
    assert message.startswith("providers.mine.type: required")


def test_openai_compatible_provider_needs_a_base_url(tmp_path: Path) -> None:
    message = config_error(tmp_path, "providers:\n  mine: {type: openai_compatible}\n")
    assert message.startswith("providers.mine.base_url: required")


@pytest.mark.parametrize("url", ["ftp://example.com", "api.openai.com/v1", "http://", ""])
def test_base_url_must_be_an_http_url(tmp_path: Path, url: str) -> None:
    message = config_error(tmp_path, f"providers:\n  openai: {{base_url: '{url}'}}\n")
    assert message.startswith("providers.openai.base_url: must be an http(s) URL")


@pytest.mark.parametrize("value", ["0", "-1", "abc", "true"])
def test_timeouts_must_be_positive_numbers(tmp_path: Path, value: str) -> None:
    message = config_error(tmp_path, f"providers:\n  openai: {{timeouts: {{read: {value}}}}}\n")
    assert message.startswith("providers.openai.timeouts.read: must be a positive number")


def test_unknown_provider_key_is_named(tmp_path: Path) -> None:
    message = config_error(tmp_path, "providers:\n  openai: {apikey: x}\n")
    assert message.startswith("providers.openai.apikey: unknown key")


# --- server and top level ------------------------------------------------------------------


def test_unknown_top_level_key_is_named(tmp_path: Path) -> None:
    assert config_error(tmp_path, "provider: {}\n").startswith("provider: unknown top-level key")


@pytest.mark.parametrize(("port", "problem"), [(0, "between 1 and 65535"), (65536, "between 1 and 65535")])
def test_port_out_of_range_is_named(tmp_path: Path, port: int, problem: str) -> None:
    message = config_error(tmp_path, f"server: {{port: {port}}}\n")
    assert message.startswith("server.port: must be") and problem in message


def test_bad_port_from_environment_names_the_variable() -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(env={"AISTATS_PORT": "http"})
    assert info.value.key == "AISTATS_PORT"


def test_workers_must_be_at_least_one(tmp_path: Path) -> None:
    assert config_error(tmp_path, "server: {workers: 0}\n").startswith("server.workers: must be at least 1")


def test_unknown_log_level_is_named(tmp_path: Path) -> None:
    assert config_error(tmp_path, "log_level: loud\n").startswith("log_level: unknown log level 'loud'")


def test_invalid_yaml_names_the_file_and_line(tmp_path: Path) -> None:
    message = config_error(tmp_path, "server:\n  port: [1, 2\n")
    assert "gateway.yaml:" in message and "invalid YAML" in message


def test_missing_config_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(env={"AISTATS_CONFIG": str(tmp_path / "nope.yaml")})
    assert info.value.key == "AISTATS_CONFIG"


# --- models section ------------------------------------------------------------------------

GOOD_MODEL = """
models:
  openai/gpt-4o-mini:
    providers:
      - provider: openai
        model: gpt-4o-mini
        price: {input: "0.15", output: "0.60", cached_input: "0.075"}
  google/gemma-3-27b:free:
    providers:
      - {provider: google-ai-studio, model: gemma-3-27b-it, price: {input: "0", output: "0"}}
"""


def test_valid_models_section_is_kept(tmp_path: Path) -> None:
    models = load_settings(write_config(tmp_path, GOOD_MODEL), env={}).models
    assert set(models) == {"openai/gpt-4o-mini", "google/gemma-3-27b:free"}
    assert models["openai/gpt-4o-mini"]["providers"][0]["price"]["cached_input"] == "0.075"


def test_bad_price_message_names_the_full_key(tmp_path: Path) -> None:
    message = config_error(tmp_path, GOOD_MODEL.replace('input: "0.15"', "input: abc"))
    assert message == "models.openai/gpt-4o-mini.providers[0].price.input: not a decimal USD amount: 'abc'"


@pytest.mark.parametrize(
    ("price", "problem"),
    [('"-0.15"', "must not be negative"), ('"0.0000000001"', "more precision than 1e-9 USD")],
)
def test_negative_or_too_precise_price_is_rejected(tmp_path: Path, price: str, problem: str) -> None:
    message = config_error(tmp_path, GOOD_MODEL.replace('output: "0.60"', f"output: {price}"))
    assert message.startswith("models.openai/gpt-4o-mini.providers[0].price.output:") and problem in message


def test_free_model_must_cost_nothing(tmp_path: Path) -> None:
    message = config_error(tmp_path, GOOD_MODEL.replace('output: "0"}', 'output: "0.01"}'))
    assert (
        message
        == "models.google/gemma-3-27b:free.providers[0].price.output: a ':free' model must cost 0, not '0.01'"
    )


def test_free_model_cached_price_must_also_be_zero(tmp_path: Path) -> None:
    text = GOOD_MODEL.replace('output: "0"}', 'output: "0", cached_input: "0.001"}')
    assert "price.cached_input: a ':free' model must cost 0" in config_error(tmp_path, text)


def test_route_must_name_a_known_provider(tmp_path: Path) -> None:
    message = config_error(tmp_path, GOOD_MODEL.replace("provider: openai", "provider: openia"))
    assert message.startswith("models.openai/gpt-4o-mini.providers[0].provider: unknown provider 'openia'")


def test_route_may_use_a_provider_defined_in_the_config(tmp_path: Path) -> None:
    text = (
        "providers:\n  local: {type: openai_compatible, base_url: 'http://127.0.0.1:8000/v1'}\n"
        + GOOD_MODEL.replace("provider: openai", "provider: local")
    )
    assert load_settings(write_config(tmp_path, text), env={}).models["openai/gpt-4o-mini"]


def test_model_providers_must_be_a_non_empty_list(tmp_path: Path) -> None:
    message = config_error(tmp_path, "models:\n  me/m:\n    providers: []\n")
    assert message.startswith("models.me/m.providers: must be a non-empty list")


def test_route_needs_the_provider_model_id(tmp_path: Path) -> None:
    message = config_error(tmp_path, GOOD_MODEL.replace("model: gpt-4o-mini", "model: 5"))
    assert message.startswith("models.openai/gpt-4o-mini.providers[0].model: required")


def test_route_needs_a_price(tmp_path: Path) -> None:
    text = "models:\n  me/m:\n    providers:\n      - {provider: openai, model: m}\n"
    assert config_error(tmp_path, text).startswith("models.me/m.providers[0].price: required")


def test_price_needs_input_and_output(tmp_path: Path) -> None:
    text = "models:\n  me/m:\n    providers:\n      - {provider: openai, model: m, price: {input: '1'}}\n"
    assert config_error(tmp_path, text).startswith("models.me/m.providers[0].price.output: required")


def test_misspelled_price_key_is_named(tmp_path: Path) -> None:
    message = config_error(tmp_path, GOOD_MODEL.replace("cached_input:", "cache_input:"))
    assert message.startswith("models.openai/gpt-4o-mini.providers[0].price.cache_input: unknown key")


@pytest.mark.parametrize("where", ["model", "route"])
@pytest.mark.parametrize("value", ["0", "-5", "1.5", "many"])
def test_token_limits_must_be_positive_whole_numbers(tmp_path: Path, where: str, value: str) -> None:
    if where == "model":
        text = f"models:\n  me/m:\n    context_length: {value}\n" + "    providers:\n"
        key = "models.me/m.context_length"
    else:
        text = "models:\n  me/m:\n    providers:\n"
        key = "models.me/m.providers[0].context_length"
    route = "      - {provider: openai, model: m, price: {input: '1', output: '1'}"
    text += route + (f", context_length: {value}}}\n" if where == "route" else "}\n")
    assert config_error(tmp_path, text).startswith(f"{key}: must be")


def test_model_id_needs_an_owner(tmp_path: Path) -> None:
    route = "{provider: openai, model: m, price: {input: '1', output: '1'}}"
    text = f"models:\n  gpt-4o:\n    providers:\n      - {route}\n"
    assert config_error(tmp_path, text).startswith("models.gpt-4o: model id must look like '<owner>/<model>'")


def test_provider_formats_narrow_what_the_type_speaks(tmp_path: Path) -> None:
    config = tmp_path / "c.yaml"
    config.write_text(
        "providers:\n  r: {type: openai, base_url: 'http://x/v1', api_key: k, formats: [responses]}\n"
    )
    settings = load_settings(config, env={"AISTATS_DATA_DIR": str(tmp_path)})
    assert settings.providers["r"].formats == ("responses",)
    config.write_text(
        "providers:\n  r: {type: openai_compatible, base_url: 'http://x/v1', formats: [messages]}\n"
    )
    with pytest.raises(ConfigError, match=r"providers\.r\.formats"):
        load_settings(config, env={"AISTATS_DATA_DIR": str(tmp_path)})


def test_route_supported_parameters_are_kept(tmp_path: Path) -> None:
    text = GOOD_MODEL.replace(
        'cached_input: "0.075"}', 'cached_input: "0.075"}\n        supported_parameters: [tools, seed]'
    )
    models = load_settings(write_config(tmp_path, text), env={}).models
    assert models["openai/gpt-4o-mini"]["providers"][0]["supported_parameters"] == ["tools", "seed"]


@pytest.mark.parametrize(
    ("value", "problem"),
    [("[tools, telepathy]", "unknown parameter 'telepathy'"), ("tools", "must be a list of parameter names")],
)
def test_route_supported_parameters_must_come_from_the_vocabulary(
    tmp_path: Path, value: str, problem: str
) -> None:
    text = GOOD_MODEL.replace(
        'cached_input: "0.075"}', f'cached_input: "0.075"}}\n        supported_parameters: {value}'
    )
    message = config_error(tmp_path, text)
    assert message.startswith("models.openai/gpt-4o-mini.providers[0].supported_parameters:"), message
    assert problem in message and "response_format" in message
