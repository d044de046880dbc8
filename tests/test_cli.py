"""Every command's ``--help``: a description without reST marks, and help for every option
that says its default."""

import argparse
import importlib

import pytest

COMMANDS = ["harness.run", "harness.reproduce_table1", "harness.tune", "harness.report",
            "harness.bench", "harness.sampling", "harness.guidance", "harness.figures",
            "harness.diagnose", "harness.bench_gpu", "harness.bench_recbole", "harness.bench_cost",
            "harness.data.__main__", "harness.campaign", "harness.embeddings", "harness.bench_ray"]


class _Parsed(Exception):
    def __init__(self, parser):
        self.parser = parser


def _parser(module, monkeypatch):
    def capture(self, *a, **k):
        raise _Parsed(self)

    monkeypatch.setattr(argparse.ArgumentParser, "parse_known_args", capture)
    with pytest.raises(_Parsed) as e:
        importlib.import_module(module).main([])
    return e.value.parser


@pytest.mark.parametrize("module", COMMANDS)
def test_help_describes_the_command_and_every_option_with_its_default(module, monkeypatch):
    parser = _parser(module, monkeypatch)
    parsers = [parser] + [p for a in parser._actions if isinstance(a, argparse._SubParsersAction)
                          for p in a.choices.values()]
    assert "``" not in (parser.description or "") and parser.description
    for p in parsers:
        for action in p._actions:
            if isinstance(action, (argparse._HelpAction, argparse._SubParsersAction)):
                continue
            name = "/".join(action.option_strings) or action.dest
            assert action.help, f"{module} {name} has no help text"
            if action.option_strings and action.default not in (None, False, []):
                assert "default" in action.help, f"{module} {name}: help does not give its default"
