import pytest

from lighthouse.config import ConfigError, load_config


def test_precedence_overrides_env_file_defaults(tmp_path):
    path = tmp_path / "lighthouse.toml"
    path.write_text(
        '[server]\nport = 9000\nhost = "127.0.0.1"\n'
        '[[rooms]]\nid = "town-1"\nname = "城关镇"\nvideo_codec = "VP8"\n'
        '[[ice_servers]]\nurls = "stun:stun.example.org:3478"\n',
        encoding="utf-8",
    )
    config = load_config(path, env={"LIGHTHOUSE_PORT": "9100", "LIGHTHOUSE_SECRET": "s" * 40})
    assert config.port == 9100  # env beats the file
    assert config.host == "127.0.0.1"  # file beats the default
    assert config.secret == "s" * 40
    assert config.rooms[0].video_codec == "vp8" and config.rooms[0].name == "城关镇"
    assert config.ice_servers[0].urls == ["stun:stun.example.org:3478"]
    assert load_config(path, env={}, port=1).port == 1  # explicit overrides beat both


def test_secret_is_generated_when_absent_and_checked_when_given():
    assert len(load_config(env={}).secret) >= 32
    assert load_config(env={}).secret != load_config(env={}).secret
    with pytest.raises(ConfigError, match="32 bytes"):
        load_config(env={"LIGHTHOUSE_SECRET": "short"})


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[[rooms]]\nname = "x"\n', "lacks 'id'"),
        ('[[rooms]]\nid = "x"\nvideo_codec = "vp9"\n', "video_codec"),
        ("[server\n", "cannot read"),
        ("[[ice_servers]]\nusername = 'u'\n", "urls"),
    ],
)
def test_bad_config_files_name_the_problem(tmp_path, text, message):
    path = tmp_path / "bad.toml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError, match=message):
        load_config(path, env={})


def test_ice_servers_from_env_must_be_json():
    with pytest.raises(ConfigError, match="JSON"):
        load_config(env={"LIGHTHOUSE_ICE_SERVERS": "stun:x"})
    config = load_config(
        env={
            "LIGHTHOUSE_ICE_SERVERS": '[{"urls": ["turn:t:3478"], '
            '"username": "u", "credential": "c"}]'
        }
    )
    assert config.ice_servers[0].to_browser() == {
        "urls": ["turn:t:3478"],
        "username": "u",
        "credential": "c",
    }


def test_recognition_settings_from_file_and_env(tmp_path):
    path = tmp_path / "lighthouse.toml"
    path.write_text(
        '[recognition]\nmodels_dir = "/srv/models/buffalo_l"\nliveness_min_residual = 0.02\n'
        'providers = ["CUDAExecutionProvider", "CPUExecutionProvider"]\n'
        "batch_across_streams = 32\n",
        encoding="utf-8",
    )
    config = load_config(path, env={})
    assert config.face_models_dir == "/srv/models/buffalo_l"
    assert config.liveness_min_residual == 0.02
    assert config.face_providers == ("CUDAExecutionProvider", "CPUExecutionProvider")
    assert config.batch_across_streams == 32
    env = {"LIGHTHOUSE_FACE_MODELS_DIR": "/opt/pack"}
    assert load_config(path, env=env).face_models_dir == "/opt/pack"
    assert load_config(env={}).face_models_dir == ""  # the bundled models
    path.write_text("[recognition]\nliveness_min_residual = 2\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="liveness_min_residual must be between"):
        load_config(path, env={})
    path.write_text("[recognition]\nliveness_min_change = 0.035\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="liveness_min_change is gone"):
        load_config(path, env={})
    path.write_text('[recognition]\nproviders = "CUDAExecutionProvider"\n', encoding="utf-8")
    with pytest.raises(ConfigError, match="providers must be a list"):
        load_config(path, env={})


def test_production_settings_on_a_generated_secret_are_warned_about(tmp_path):
    from lighthouse.config import generated_secret_warning, keep_secret

    database = f"sqlite:///{tmp_path}/lighthouse.db"
    embedded, _ = keep_secret(load_config(env={}, database_url=database))
    assert generated_secret_warning(embedded) is None  # make run: nothing to say
    county, _ = keep_secret(
        load_config(env={}, database_url=database, public_url="https://dj.example.gov.cn")
    )
    warning = generated_secret_warning(county)
    assert warning and "https://dj.example.gov.cn" in warning and "LIGHTHOUSE_SECRET" in warning
    assert county.secret not in warning
    configured = load_config(env={"LIGHTHOUSE_SECRET": "s" * 40}, public_url="https://x.example")
    assert generated_secret_warning(configured) is None


def test_server_hardening_settings_are_read_and_checked(tmp_path):
    path = tmp_path / "lighthouse.toml"
    path.write_text(
        '[server]\ntrusted_proxies = ["10.0.0.5", "172.16.0.0/12"]\n'
        'previous_secrets = ["' + "p" * 40 + '"]\nmax_remote_candidates = 4\n'
        "max_peer_connections = 900\n",
        encoding="utf-8",
    )
    config = load_config(path, env={})
    assert config.trusted_proxies == ("10.0.0.5/32", "172.16.0.0/12")
    assert config.previous_secrets == ("p" * 40,)
    assert (config.max_remote_candidates, config.max_peer_connections) == (4, 900)
    env = {"LIGHTHOUSE_TRUSTED_PROXIES": "127.0.0.1, ::1", "LIGHTHOUSE_PREVIOUS_SECRETS": "q" * 32}
    config = load_config(env=env)
    assert config.trusted_proxies == ("127.0.0.1/32", "::1/128")
    assert config.previous_secrets == ("q" * 32,)
    for bad in (
        '[server]\ntrusted_proxies = ["village-proxy"]\n',
        '[server]\nprevious_secrets = ["short"]\n',
        "[server]\nmax_remote_candidates = 0\n",
        '[server]\nallow_loopback_candidates = "yes"\n',
    ):
        path.write_text(bad, encoding="utf-8")
        with pytest.raises(ConfigError):
            load_config(path, env={})


def test_turn_shared_secret_settings_are_read_and_checked(tmp_path):
    path = tmp_path / "lighthouse.toml"
    path.write_text(
        '[turn]\nurls = ["turn:t.example:3478?transport=udp", "turns:t.example:5349"]\n'
        'secret = "' + "t" * 20 + '"\nttl_s = 7200\n',
        encoding="utf-8",
    )
    config = load_config(path, env={})
    assert config.turn_urls == ("turn:t.example:3478?transport=udp", "turns:t.example:5349")
    assert (config.turn_secret, config.turn_ttl_s) == ("t" * 20, 7200)
    env = {"LIGHTHOUSE_TURN_URLS": "turn:a:3478, turn:b:3478", "LIGHTHOUSE_TURN_SECRET": "u" * 16}
    config = load_config(env=env)
    assert config.turn_urls == ("turn:a:3478", "turn:b:3478") and config.turn_secret == "u" * 16
    for bad, message in (
        ('[turn]\nurls = ["turn:a:3478"]\n', "both urls and secret"),
        ('[turn]\nsecret = "' + "t" * 20 + '"\n', "both urls and secret"),
        ('[turn]\nurls = ["stun:a:3478"]\nsecret = "' + "t" * 20 + '"\n', "not a turn"),
        ('[turn]\nurls = ["turn:a"]\nsecret = "short"\n', "16 bytes"),
        ('[turn]\nurls = ["turn:a"]\nsecret = "' + "t" * 20 + '"\nttl_s = 5\n', "ttl_s"),
    ):
        path.write_text(bad, encoding="utf-8")
        with pytest.raises(ConfigError, match=message):
            load_config(path, env={})


def test_the_udp_port_range_is_checked():
    assert load_config(env={"LIGHTHOUSE_UDP_PORTS": "40000-40999"}).udp_ports == "40000-40999"
    for bad, message in (
        ("40000", "FIRST-LAST"),
        ("50-60", "1024-65535"),
        ("40000-40002", "small"),
    ):
        with pytest.raises(ConfigError, match=message):
            load_config(env={"LIGHTHOUSE_UDP_PORTS": bad}, workers=2)


def test_duty_settings_and_webhooks_from_the_file(tmp_path):
    path = tmp_path / "lighthouse.toml"
    path.write_text(
        '[duty]\ntimezone = "Asia/Urumqi"\ntick_s = 10\n'
        '[[webhooks]]\nname = "sms"\nurl = "https://sms.example.org/hook"\n'
        'secret = "sixteen-bytes-ok"\nevents = ["duty.late"]\n',
        encoding="utf-8",
    )
    config = load_config(path, env={})
    assert config.county_timezone == "Asia/Urumqi" and config.duty_tick_s == 10
    (hook,) = config.webhooks
    assert hook.name == "sms" and hook.takes("duty.late") and not hook.takes("duty.absent")
    assert load_config(env={}).county_timezone == "Asia/Shanghai"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[duty]\ntimezone = "Mars/Olympus"\n', "no such time zone"),
        ("[duty]\ntick_s = 0.1\n", "tick_s"),
        ("[duty]\nfoo = 1\n", "unknown [duty] setting"),
        ('[[webhooks]]\nname = "a"\nurl = "ftp://x"\nsecret = "sixteen-bytes-ok"\n', "http"),
        ('[[webhooks]]\nname = "a"\nurl = "https://x"\nsecret = "short"\n', "16 bytes"),
        (
            '[[webhooks]]\nname = "a"\nurl = "https://x"\nsecret = "sixteen-bytes-ok"\n'
            '[[webhooks]]\nname = "a"\nurl = "https://y"\nsecret = "sixteen-bytes-ok"\n',
            "unique",
        ),
    ],
)
def test_bad_duty_settings_name_the_problem(tmp_path, text, message):
    path = tmp_path / "lighthouse.toml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError, match=message.replace("[", r"\[")):
        load_config(path, env={})
