"""The INI config: declared keys, types, environment, secrets, errors."""

from __future__ import annotations

from pathlib import Path

from twisted.trial import unittest

from snfd import config as cfg
from snfd.config import ConfigError, Key, number, text
from snfd.testing.files import temp_file

PLUGIN_KEYS = {"thing": (Key("colour", text, "blue", "a colour"),
                         Key("size", number, cfg.REQUIRED, "a size"),
                         Key("token", text, "", "a secret", secret=True))}


class ConfigTests(unittest.TestCase):
    def write(self, body: str) -> str:
        return temp_file(self, body)

    def load(self, body: str | None, env: dict[str, str] | None = None,
             keys: dict | None = None) -> cfg.Config:
        path = self.write(body) if body is not None else None
        return cfg.load_config(path, keys if keys is not None else {}, environ=env or {})

    def test_defaults(self) -> None:
        """With no file and no environment every key has its default:
        listen on 127.0.0.1:8080, embedded database, in-process bus, all plugins."""
        c = self.load(None)
        self.assertEqual(c.node.listen, ("tcp:8080:interface=127.0.0.1",))
        self.assertEqual(c.database.url, "")
        self.assertEqual(c.bus.url, "")
        self.assertIsNone(c.plugins.enabled)

    def test_typed_values(self) -> None:
        """Values are parsed to their declared types."""
        c = self.load("[database]\npool_max = 7\nauto_upgrade = yes\n"
                      "[node]\nheartbeat_interval = 1.5\n")
        self.assertEqual(c.database.pool_max, 7)
        self.assertIs(c.database.auto_upgrade, True)
        self.assertEqual(c.node.heartbeat_interval, 1.5)

    def test_unknown_section(self) -> None:
        """An unknown section is an error naming the file and the section."""
        e = self.assertRaises(ConfigError, self.load, "[nope]\na = 1\n")
        self.assertIn("[nope]", str(e))
        self.assertIn("unknown section", str(e))
        self.assertNotIn("\n", str(e))

    def test_unknown_key(self) -> None:
        """An unknown key is an error naming file, section and key."""
        path = self.write("[node]\nlisten_on = tcp:1\n")
        e = self.assertRaises(ConfigError, cfg.load_config, path, {}, {})
        self.assertEqual(str(e), f"{path}: [node] listen_on: unknown key")

    def test_wrong_type(self) -> None:
        """A value of the wrong type names the key and what was expected."""
        e = self.assertRaises(ConfigError, self.load, "[database]\npool_max = ten\n")
        self.assertIn("[database] pool_max: expected an integer", str(e))
        e = self.assertRaises(ConfigError, self.load, "[database]\nauto_upgrade = maybe\n")
        self.assertIn("[database] auto_upgrade", str(e))

    def test_bad_url_scheme(self) -> None:
        """A database URL that is not PostgreSQL is refused."""
        e = self.assertRaises(ConfigError, self.load, "[database]\nurl = mysql://x/y\n")
        self.assertIn("[database] url: expected a URL starting with postgresql://", str(e))

    def test_required_plugin_key(self) -> None:
        """A required key of a plugin's section must be given."""
        e = self.assertRaises(ConfigError, self.load, "[thing]\ncolour = red\n",
                              keys=PLUGIN_KEYS)
        self.assertIn("[thing] size: required but not set", str(e))
        c = self.load("[thing]\nsize = 3\n", keys=PLUGIN_KEYS)
        self.assertEqual((c["thing"].colour, c["thing"].size), ("blue", 3.0))

    def test_family_of_sections(self) -> None:
        """A family ``prefix:*`` validates every ``[prefix:NAME]`` section
        against its keys; a bad value or a bad name stops with one line
        naming the section and key."""
        keys = {"thing:*": PLUGIN_KEYS["thing"]}
        c = self.load("[thing:a]\nsize = 1\n[thing:b-2]\nsize = 2\ncolour = red\n",
                      keys=keys)
        self.assertEqual((c["thing:a"].colour, c["thing:b-2"].colour), ("blue", "red"))
        self.assertNotIn("thing:*", c.sections)
        e = self.assertRaises(ConfigError, self.load, "[thing:a]\nsize = big\n", keys=keys)
        self.assertIn("[thing:a] size: expected a number", str(e))
        e = self.assertRaises(ConfigError, self.load, "[thing:a]\n", keys=keys)
        self.assertIn("[thing:a] size: required but not set", str(e))
        e = self.assertRaises(ConfigError, self.load, "[thing:a b]\nsize = 1\n", keys=keys)
        self.assertIn("[thing:a b]", str(e))
        e = self.assertRaises(ConfigError, self.load, "[other:a]\nsize = 1\n", keys=keys)
        self.assertIn("unknown section", str(e))
        self.assertNotIn("\n", str(e))

    def test_environment_overrides_file(self) -> None:
        """SNFD_* variables override the file; errors in them name the variable."""
        c = self.load("[node]\nlisten = tcp:1:interface=127.0.0.1\n",
                      env={"SNFD_LISTEN": "tcp:2:interface=127.0.0.1",
                           "SNFD_DATABASE_URL": "postgresql://u@h/d",
                           "SNFD_BUS_URL": "amqp://g:g@127.0.0.1:5672/%2F",
                           "SNFD_STATE_DIR": "/tmp/x"})
        self.assertEqual(c.node.listen, ("tcp:2:interface=127.0.0.1",))
        self.assertEqual(c.database.url, "postgresql://u@h/d")
        self.assertEqual(c.bus.url, "amqp://g:g@127.0.0.1:5672/%2F")
        self.assertEqual(c.node.state_dir, Path("/tmp/x"))
        e = self.assertRaises(ConfigError, self.load, None, env={"SNFD_LISTEN": "bogus:1"})
        self.assertIn("environment SNFD_LISTEN: [node] listen", str(e))

    def test_plugins_env_empty_means_none(self) -> None:
        """SNFD_PLUGINS="" enables no plugin; a list enables those."""
        self.assertEqual(self.load(None, env={"SNFD_PLUGINS": ""}).plugins.enabled, ())
        self.assertEqual(self.load(None, env={"SNFD_PLUGINS": "a, b"}).plugins.enabled,
                         ("a", "b"))

    def test_secret_from_file(self) -> None:
        """A secret key may be read from a file named by <key>_file."""
        secret = self.write("s3cr3t\n")
        c = self.load(f"[thing]\nsize = 1\ntoken_file = {secret}\n", keys=PLUGIN_KEYS)
        self.assertEqual(c["thing"].token, "s3cr3t")
        e = self.assertRaises(ConfigError, self.load,
                              "[thing]\nsize = 1\ntoken_file = /nonexistent/x\n",
                              keys=PLUGIN_KEYS)
        self.assertIn("[thing] token_file: cannot read /nonexistent/x", str(e))
        e = self.assertRaises(ConfigError, self.load,
                              f"[thing]\nsize = 1\ntoken = a\ntoken_file = {secret}\n",
                              keys=PLUGIN_KEYS)
        self.assertIn("not both", str(e))
        e = self.assertRaises(ConfigError, self.load, "[thing]\nsize = 1\ncolour_file = x\n",
                              keys=PLUGIN_KEYS)
        self.assertIn("[thing] colour_file: unknown key", str(e))

    def test_missing_file(self) -> None:
        """A config file that cannot be read is one clear line."""
        e = self.assertRaises(ConfigError, cfg.load_config, "/nonexistent.conf", {}, {})
        self.assertIn("/nonexistent.conf", str(e))
        self.assertIn("cannot read", str(e))

    def test_syntax_error(self) -> None:
        """A malformed INI file is reported on one line."""
        e = self.assertRaises(ConfigError, self.load, "key without section\n")
        self.assertNotIn("\n", str(e))

    def test_example_documents_every_key(self) -> None:
        """The generated example names every core and plugin key, and the
        shipped etc/snfd.conf.example is exactly that text (kept in sync)."""
        from snfd import plugin_loader

        plugin_keys = plugin_loader.config_keys(plugin_loader.installed())
        text_ = cfg.example(plugin_keys)
        for section, keys in [*cfg.CORE_KEYS.items(), *plugin_keys.items()]:
            self.assertIn(f"[{section.replace(':*', ':NAME')}]", text_)
            for key in keys:
                self.assertIn(f"#{key.name} = ", text_)
        shipped = Path(__file__).parent.parent / "etc" / "snfd.conf.example"
        self.assertEqual(shipped.read_text(), text_,
                         "regenerate with: snf-manage config-example > etc/snfd.conf.example")

    def test_shipped_config_is_valid(self) -> None:
        """etc/snfd.conf, the config the README runs, passes validation."""
        shipped = Path(__file__).parent.parent / "etc" / "snfd.conf"
        c = cfg.load_config(str(shipped), {}, environ={})
        self.assertEqual(c.node.listen, ("tcp:8080:interface=127.0.0.1",))
