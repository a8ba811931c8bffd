"""Settings: defaults, the full set, and one clear line for every bad value."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from infra.settings import Settings, SettingsError

SID = "AC" + "0123456789abcdef" * 2
SECRET = "s3cr3t-value-never-shown"
KEY_A = base64.b64encode(b"A" * 32).decode()
KEY_B = base64.b64encode(b"B" * 32).decode()
KEYS = f"key-b={KEY_B},key-a={KEY_A}"
TOKEN = "codec-token-" + "x" * 32


@pytest.fixture
def tls_files(tmp_path: Path) -> dict[str, str]:
    cert, key = tmp_path / "client.pem", tmp_path / "client.key"
    cert.write_text("cert")
    key.write_text("key")
    return {"TEMPORAL_TLS_CERT": str(cert), "TEMPORAL_TLS_KEY": str(key)}


def full_env(tmp_path: Path) -> dict[str, str]:
    return {
        "TEMPORAL_ADDRESS": "myns.a1b2c.tmprl.cloud:7233",
        "TEMPORAL_NAMESPACE": "myns.a1b2c",
        "TEMPORAL_API_KEY": SECRET,
        "TEMPORAL_TASK_QUEUE": "policy-lapse-eu",
        "DATABASE_URL": f"postgresql://lapse:{SECRET}@db.internal:5432/lapse",
        "TWILIO_ACCOUNT_SID": SID,
        "TWILIO_AUTH_TOKEN": SECRET,
        "TWILIO_FROM_NUMBER": "+8613800138000",
        "SENDGRID_API_KEY": SECRET,
        "SENDGRID_FROM": "notices@insurer.example",
        "WECHAT_APP_ID": "wx0123456789abcdef",
        "WECHAT_APP_SECRET": SECRET,
        "WECHAT_TOKEN": "wechatServerToken1",
        "WECOM_CORP_ID": "ww0123456789abcdef",
        "WECOM_AGENT_ID": "1000002",
        "WECOM_SECRET": SECRET,
        "LAPSE_TIME_SCALE": "86400",
        "LAPSE_DATA_DIR": str(tmp_path / "data"),
        "LAPSE_PAYLOAD_KEYS": KEYS,
        "LAPSE_CODEC_TOKEN": TOKEN,
        "LAPSE_CODEC_ORIGINS": "https://temporal.insurer.example, http://127.0.0.1:8233",
    }


def test_defaults_embed_everything_and_sandbox_every_provider(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    settings = Settings.from_env({})
    assert settings.temporal_address is None and settings.temporal_embedded
    assert settings.database_url is None and settings.database_embedded
    assert settings.temporal_namespace == "default"
    assert settings.temporal_task_queue == "policy-lapse"
    assert settings.time_scale == 1.0
    assert settings.data_dir == tmp_path / ".lapse-data"
    assert settings.providers_sandboxed == ["twilio", "sendgrid", "wechat", "wecom"]
    assert settings.temporal_auth == "none"


def test_empty_values_count_as_unset():
    settings = Settings.from_env({"TEMPORAL_ADDRESS": "", "LAPSE_TIME_SCALE": "  "})
    assert settings.temporal_address is None
    assert settings.time_scale == 1.0


def test_full_configuration(tmp_path):
    settings = Settings.from_env(full_env(tmp_path))
    assert settings.temporal_address == "myns.a1b2c.tmprl.cloud:7233"
    assert settings.temporal_api_key.get_secret_value() == SECRET
    assert settings.temporal_auth == "api key"
    assert settings.twilio.from_number == "+8613800138000"
    assert settings.sendgrid.from_email == "notices@insurer.example"
    assert settings.wechat.app_secret.get_secret_value() == SECRET
    assert settings.wechat.server_token.get_secret_value() == "wechatServerToken1"
    assert (settings.wecom.corp_id, settings.wecom.agent_id) == ("ww0123456789abcdef", 1000002)
    assert settings.wecom.secret.get_secret_value() == SECRET
    assert settings.providers_sandboxed == []
    assert settings.time_scale == 86400.0
    assert settings.data_dir == tmp_path / "data"
    assert [key.key_id for key in settings.payload_keys] == ["key-b", "key-a"]  # newest first
    assert settings.payload_keys[0].secret.get_secret_value() == b"B" * 32
    assert settings.codec_token.get_secret_value() == TOKEN
    assert settings.codec_origins == ("https://temporal.insurer.example", "http://127.0.0.1:8233")


def test_secrets_never_appear_in_repr_or_description(tmp_path):
    settings = Settings.from_env(full_env(tmp_path))
    for secret in (SECRET, KEY_A, KEY_B, TOKEN, "AAAA"):
        assert secret not in repr(settings)
        assert secret not in str(settings.describe())
    assert settings.describe()["payload_keys"] == ["key-b", "key-a"]
    assert settings.describe()["database"] == "postgresql://lapse:***@db.internal:5432/lapse"


def test_mutual_tls(tls_files):
    settings = Settings.from_env({"TEMPORAL_ADDRESS": "temporal.internal:7233",
                                  "LAPSE_PAYLOAD_KEYS": KEYS, **tls_files})
    assert settings.temporal_tls_cert == Path(tls_files["TEMPORAL_TLS_CERT"])
    assert settings.temporal_auth == "mTLS"


def test_ipv6_address():
    settings = Settings.from_env({"TEMPORAL_ADDRESS": "[::1]:7233", "LAPSE_PAYLOAD_KEYS": KEYS})
    assert settings.temporal_address == "[::1]:7233"


@pytest.mark.parametrize(
    ("env", "variable", "expected"),
    [
        ({"LAPSE_TIME_SCALE": "fast"}, "LAPSE_TIME_SCALE", "greater than 0"),
        ({"LAPSE_TIME_SCALE": "0"}, "LAPSE_TIME_SCALE", "greater than 0"),
        ({"LAPSE_TIME_SCALE": "-5"}, "LAPSE_TIME_SCALE", "greater than 0"),
        ({"LAPSE_TIME_SCALE": "nan"}, "LAPSE_TIME_SCALE", "greater than 0"),
        ({"LAPSE_TIME_SCALE": "inf"}, "LAPSE_TIME_SCALE", "at most 10_000_000"),
        ({"LAPSE_TIME_SCALE": "10000001"}, "LAPSE_TIME_SCALE", "at most 10_000_000"),
        ({"TEMPORAL_ADDRESS": "localhost"}, "TEMPORAL_ADDRESS", "host:port"),
        ({"TEMPORAL_ADDRESS": "localhost:99999"}, "TEMPORAL_ADDRESS", "host:port"),
        ({"TEMPORAL_ADDRESS": "http://x:7233"}, "TEMPORAL_ADDRESS", "host:port"),
        ({"TEMPORAL_NAMESPACE": "my namespace"}, "TEMPORAL_NAMESPACE", "letters, digits"),
        ({"TEMPORAL_TASK_QUEUE": "policy lapse"}, "TEMPORAL_TASK_QUEUE", "without spaces"),
        ({"DATABASE_URL": "mysql://root@db/x"}, "DATABASE_URL", "postgres:// or postgresql://"),
        ({"DATABASE_URL": "lapse.db"}, "DATABASE_URL", "got no scheme"),
        ({"DATABASE_URL": "postgres://db:port/x"}, "DATABASE_URL", "malformed host or port"),
        ({"TWILIO_ACCOUNT_SID": "AC123", "TWILIO_AUTH_TOKEN": SECRET,
          "TWILIO_FROM_NUMBER": "+8613800138000"}, "TWILIO_ACCOUNT_SID", "32 hex digits"),
        ({"TWILIO_ACCOUNT_SID": SID, "TWILIO_AUTH_TOKEN": SECRET,
          "TWILIO_FROM_NUMBER": "13800138000"}, "TWILIO_FROM_NUMBER", "E.164"),
        ({"TWILIO_ACCOUNT_SID": SID}, "TWILIO_AUTH_TOKEN", "set together with TWILIO_ACCOUNT_SID"),
        ({"SENDGRID_API_KEY": SECRET}, "SENDGRID_FROM", "set together with SENDGRID_API_KEY"),
        ({"SENDGRID_API_KEY": SECRET, "SENDGRID_FROM": "notices"}, "SENDGRID_FROM", "e-mail"),
        ({"WECHAT_APP_SECRET": SECRET}, "WECHAT_APP_ID", "set together with WECHAT_APP_SECRET"),
        ({"WECHAT_APP_ID": "wx1", "WECHAT_APP_SECRET": "two words " + SECRET},
         "WECHAT_APP_SECRET", "must not contain spaces"),
        ({"WECOM_CORP_ID": "ww0123456789abcdef", "WECOM_SECRET": SECRET}, "WECOM_AGENT_ID",
         "set together with WECOM_CORP_ID, WECOM_SECRET"),
        ({"WECOM_CORP_ID": "corp 1", "WECOM_AGENT_ID": "1000002", "WECOM_SECRET": SECRET},
         "WECOM_CORP_ID", "'ww' and 16 letters or digits"),
        ({"WECOM_CORP_ID": "ww0123456789abcdef", "WECOM_AGENT_ID": "-2",
          "WECOM_SECRET": SECRET}, "WECOM_AGENT_ID", "positive whole number"),
        ({"WECOM_CORP_ID": "ww0123456789abcdef", "WECOM_AGENT_ID": "1000002",
          "WECOM_SECRET": "two words " + SECRET}, "WECOM_SECRET", "must not contain spaces"),
        ({"WECHAT_APP_ID": "wx1", "WECHAT_APP_SECRET": SECRET, "WECHAT_TOKEN": "a b"},
         "WECHAT_TOKEN", "3-32 letters or digits"),
        ({"LAPSE_AGENT_NUMBER": "400-800-1234"}, "LAPSE_AGENT_NUMBER", "E.164"),
        ({"LAPSE_BRANCHES_FILE": "/nonexistent/branches.json"}, "LAPSE_BRANCHES_FILE",
         "existing file"),
        ({"TEMPORAL_API_KEY": SECRET}, "TEMPORAL_API_KEY", "needs TEMPORAL_ADDRESS"),
        ({"TEMPORAL_ADDRESS": "h:1", "TEMPORAL_TLS_CERT": "/nonexistent/c.pem"},
         "TEMPORAL_TLS_KEY", "set together with TEMPORAL_TLS_CERT"),
        ({"TEMPORAL_ADDRESS": "h:1", "TEMPORAL_TLS_CERT": "/nonexistent/c.pem",
          "TEMPORAL_TLS_KEY": "/nonexistent/c.key"}, "TEMPORAL_TLS_CERT", "existing file"),
        ({"TEMPORAL_ADDRESS": "h:1"}, "LAPSE_PAYLOAD_KEYS", "must be set when TEMPORAL_ADDRESS"),
        ({"LAPSE_CODEC_TOKEN": "short"}, "LAPSE_CODEC_TOKEN", "at least 32 characters"),
        ({"LAPSE_CODEC_ORIGINS": "https://ui.example/path"}, "LAPSE_CODEC_ORIGINS",
         "scheme, host and port only"),
    ],
)  # fmt: skip
def test_bad_values_give_one_line_naming_the_variable(env, variable, expected):
    with pytest.raises(SettingsError) as caught:
        Settings.from_env(env)
    message = str(caught.value)
    assert message.startswith(f"{variable}: ")
    assert expected in message
    assert "\n" not in message
    assert SECRET not in message
    assert caught.value.variable == variable


def test_database_url_errors_do_not_echo_a_password():
    with pytest.raises(SettingsError) as caught:
        Settings.from_env({"DATABASE_URL": f"mysql://root:{SECRET}@db/x"})
    assert str(caught.value) == (
        "DATABASE_URL: must be a postgres:// or postgresql:// URL (got mysql://...)"
    )


def test_data_dir_must_not_be_a_file(tmp_path):
    a_file = tmp_path / "file"
    a_file.write_text("")
    with pytest.raises(SettingsError, match="^LAPSE_DATA_DIR: must be a folder"):
        Settings.from_env({"LAPSE_DATA_DIR": str(a_file)})


def test_tls_needs_an_address(tls_files):
    with pytest.raises(SettingsError, match="^TEMPORAL_TLS_CERT: needs TEMPORAL_ADDRESS"):
        Settings.from_env(tls_files)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (KEY_A, "entry 1: must be KEY_ID=BASE64"),  # the key without its id
        (f"a={KEY_A},{KEY_B}", "entry 2: must be KEY_ID=BASE64"),
        ("a=" + base64.b64encode(b"A" * 16).decode(), "entry 1: must be KEY_ID=BASE64"),
        (f"a={KEY_A}!", "entry 1: must be KEY_ID=BASE64"),
        (f"a={KEY_A},a={KEY_B}", "entry 2: its key id appears twice"),
        (f"bad id={KEY_A}", "entry 1: must be KEY_ID=BASE64"),
        (" , ", "must be KEY_ID=BASE64"),
    ],
)
def test_bad_payload_keys_are_named_by_position_never_shown(value, expected):
    with pytest.raises(SettingsError) as caught:
        Settings.from_env({"LAPSE_PAYLOAD_KEYS": value})
    message = str(caught.value)
    assert message.startswith("LAPSE_PAYLOAD_KEYS: ") and expected in message
    assert "\n" not in message
    assert "32 random bytes in base64" in message or "twice" in message
    for shown in (KEY_A, KEY_B, KEY_A.rstrip("="), "QUFB"):
        assert shown not in message


def test_url_safe_base64_keys_are_accepted():
    urlsafe = base64.urlsafe_b64encode(bytes(range(200, 232))).decode()
    [key] = Settings.from_env({"LAPSE_PAYLOAD_KEYS": f"k1={urlsafe}"}).payload_keys
    assert key.secret.get_secret_value() == bytes(range(200, 232))
