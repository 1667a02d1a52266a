"""``snf --help``: every command of every group says what it does and
shows an example (the issue's "--help on every command with an
example"), and its help renders without a node."""

from __future__ import annotations

import click
from click.testing import CliRunner
from twisted.trial import unittest

from snfd.cli.snf import cli


def commands(group: click.Group, path: tuple[str, ...] = ("snf",)):
    for name, command in sorted(group.commands.items()):
        if isinstance(command, click.Group):
            yield from commands(command, (*path, name))
        else:
            yield (*path, name), command


class HelpTests(unittest.TestCase):
    def test_every_command_has_an_example(self):
        found = list(commands(cli))
        self.assertGreater(len(found), 100)
        lacking = [" ".join(path) for path, command in found
                   if "example" not in (command.help or "").lower()]
        self.assertEqual(lacking, [])

    def test_every_help_renders(self):
        runner = CliRunner()
        for path, _command in commands(cli):
            result = runner.invoke(cli, [*path[1:], "--help"], prog_name="snf")
            self.assertEqual(result.exit_code, 0, (path, result.output))
            self.assertIn("Usage: snf", result.output)
