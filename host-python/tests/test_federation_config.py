"""The upstream config file: what it accepts, and that a bad one names the key and line at fault."""

from __future__ import annotations

import subprocess
import sys

import pytest

from mcpgw.federation.config import ConfigError, parse
from mcpgw.federation.names import public_name, public_uri, split_name, split_uri

GOOD = """
[upstreams.files]
transport = "stdio"
command = "python"
args = ["server.py", "--root", "/srv"]
env = { LOG = "1" }
cwd = "/tmp"

[upstreams.search]
transport = "streamable-http"
url = "https://search.example.com/mcp"
headers = { Authorization = "Bearer x" }
prefix = "s"
call_timeout_s = 5

[upstreams.legacy]
transport = "sse"
url = "http://127.0.0.1:9000/sse"
"""


def test_a_good_file_gives_every_upstream_with_defaults():
    files, search, legacy = parse(GOOD)
    assert (files.id, files.transport, files.command, files.args, files.env, files.cwd, files.prefix) == (
        "files",
        "stdio",
        "python",
        ("server.py", "--root", "/srv"),
        {"LOG": "1"},
        "/tmp",
        "files",
    )
    assert (search.url, search.headers, search.prefix, search.call_timeout_s) == (
        "https://search.example.com/mcp",
        {"Authorization": "Bearer x"},
        "s",
        5.0,
    )
    assert (legacy.transport, legacy.prefix, legacy.connect_timeout_s) == ("sse", "legacy", 10.0)
    assert parse("") == []


@pytest.mark.parametrize(
    "text, message",
    [
        (
            '[upstreams.a]\ntransport = "stdio"\ncommand = "x"\ncomand = "y"\n',
            "line 4: upstreams.a: unknown key 'comand'",
        ),
        ('[upstreams.a]\ntransport = "carrier-pigeon"\n', "line 2: upstreams.a.transport must be one of"),
        ('[upstreams.a]\ntransport = "stdio"\n', "line 1: upstreams.a: a stdio upstream needs 'command'"),
        (
            '[upstreams.a]\ntransport = "stdio"\ncommand = "x"\nargs = "not a list"\n',
            "line 4: upstreams.a.args must be a list",
        ),
        ('[upstreams.a]\ntransport = "sse"\nurl = "ftp://x"\n', "line 3: upstreams.a.url must be an http"),
        (
            '[upstreams.a]\ntransport = "sse"\nurl = "http://x"\ncommand = "y"\n',
            "line 4: upstreams.a.command does not apply",
        ),
        (
            '[upstreams.a]\ntransport = "stdio"\ncommand = "x"\ncall_timeout_s = -1\n',
            "line 4: upstreams.a.call_timeout_s must be",
        ),
        ('\n[upstreams.my_tools]\ntransport = "stdio"\ncommand = "x"\n', "line 2: upstream id 'my_tools' must be"),
        (
            (
                '[upstreams.a]\ntransport = "stdio"\ncommand = "x"\n\n'
                '[upstreams.b]\ntransport = "stdio"\ncommand = "x"\nprefix = "a"\n'
            ),
            "line 8: upstreams.b.prefix 'a' is already used by upstream 'a'",
        ),
        ("servers = 1\n", "line 1: unknown key 'servers'"),
        ("[upstreams.a\n", "invalid TOML"),
    ],
)
def test_a_bad_file_names_the_key_and_line(text, message):
    with pytest.raises(ConfigError) as err:
        parse(text, "mcpgw.toml")
    assert str(err.value).startswith("mcpgw.toml")
    assert message in str(err.value)


def test_the_gateway_refuses_to_start_on_a_bad_config(tmp_path):
    path = tmp_path / "mcpgw.toml"
    path.write_text('[upstreams.a]\ntransport = "stdio"\ncommand = "x"\ntimeout = 3\n')
    done = subprocess.run(
        [sys.executable, "-m", "mcpgw.cli", "serve", "--port", "0", "--config", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,  # it is meant to fail
    )
    assert done.returncode == 2
    assert f"{path}, line 4: upstreams.a: unknown key 'timeout'" in done.stderr


def test_names_and_uris_split_back_to_their_upstream():
    assert split_name(public_name("files", "read_file")) == ("files", "read_file")
    assert split_name(public_name("files", "a__b")) == ("files", "a__b")  # the first __ is the prefix's
    assert split_name("echo") is None
    uri = public_uri("files", "git+ssh://host/repo")
    assert uri == "files+git+ssh://host/repo"
    assert split_uri(uri, {"files"}) == ("files", "git+ssh://host/repo")
    assert split_uri("git+ssh://host/repo", {"files"}) is None  # not a prefix we know: not ours


def test_max_message_bytes_defaults_to_16_mib_or_the_body_limit_and_has_a_floor():
    _, search, legacy = parse(GOOD)
    assert search.max_message_bytes == legacy.max_message_bytes == 16 * 1024 * 1024
    assert search.read_timeout_s == 300
    _, search, _ = parse(GOOD, body_limit=64 * 1024 * 1024)  # a gateway that accepts 64 MiB bodies
    assert search.max_message_bytes == 64 * 1024 * 1024
    (tight,) = parse(
        '[upstreams.t]\ntransport = "sse"\nurl = "http://h/sse"\nmax_message_bytes = 2048\nread_timeout_s = 0'
    )
    assert (tight.max_message_bytes, tight.read_timeout_s) == (2048, 0)
    with pytest.raises(ConfigError, match=r"line 4: upstreams.t.max_message_bytes must be at least 1024"):
        parse('[upstreams.t]\ntransport = "sse"\nurl = "http://h/sse"\nmax_message_bytes = 10')
    with pytest.raises(ConfigError, match=r"read_timeout_s does not apply to a stdio upstream"):
        parse('[upstreams.t]\ntransport = "stdio"\ncommand = "x"\nread_timeout_s = 5')


OAUTH = '[upstreams.t]\ntransport = "streamable-http"\nurl = "https://h/mcp"\n[upstreams.t.oauth]\n'


def test_oauth_client_credentials_are_checked(monkeypatch):
    monkeypatch.setenv("T_SECRET", "s3cret")
    (t,) = parse(OAUTH + 'issuer = "https://as"\nclient_id = "gw"\nclient_secret = "${T_SECRET}"\nscopes = ["a", "b"]')
    assert t.oauth is not None
    assert (t.oauth.issuer, t.oauth.client_id, t.oauth.client_secret, t.oauth.scopes) == (
        "https://as",
        "gw",
        "s3cret",
        ("a", "b"),
    )
    for body, message in [
        ('client_id = "gw"\nclient_secret = "x"', "needs 'token_endpoint' or 'issuer'"),
        ('issuer = "https://as"\nclient_id = "gw"', "needs 'client_secret'"),
        ('issuer = "as"\nclient_id = "gw"\nclient_secret = "x"', "issuer must be an http:// or https:// URL"),
        ('issuer = "https://as"\nclient_id = "gw"\nclient_secret = "x"\nscope = "a"', "unknown key 'scope'"),
    ]:
        with pytest.raises(ConfigError, match=r"line 4: upstreams.t.oauth"):
            parse(OAUTH + body)
        with pytest.raises(ConfigError, match=message):
            parse(OAUTH + body)
    with pytest.raises(ConfigError, match="both an Authorization header and"):
        parse(
            OAUTH.replace("[upstreams.t.oauth]", 'headers = { Authorization = "Bearer x" }\n[upstreams.t.oauth]')
            + 'issuer = "https://as"\nclient_id = "gw"\nclient_secret = "x"'
        )
    stdio = '[upstreams.t]\ntransport = "stdio"\ncommand = "x"\n[upstreams.t.oauth]\n'
    with pytest.raises(ConfigError, match="oauth does not apply to a stdio upstream"):
        parse(stdio + 'issuer = "https://as"\nclient_id = "a"\nclient_secret = "b"')
