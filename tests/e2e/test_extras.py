"""Optional dependencies: a feature used without its extra stops with one line naming the extra
to install, never a traceback; the base install's commands work without any extra."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from support.server import clean_env, free_port

from cityvisor import cli
from cityvisor.extras import EXTRA_MODULES, MissingExtra, extra_of, require_extra, requires_extra

FLOOD = EXTRA_MODULES["flood"]
LINE = ("needs the optional dependencies of cityvisor[flood] (no module {module}): "
        "pip install 'cityvisor[flood]'")


def run_without(modules: tuple[str, ...], *args: str,
                timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """``cityvisor ARGS`` in a process where ``modules`` cannot be imported, as if their
    extra were not installed (``sys.modules[name] = None`` makes ``import name`` fail)."""
    boot = ("import sys\n"
            f"for name in {list(modules)!r}: sys.modules[name] = None\n"
            "sys.argv = ['cityvisor', *sys.argv[1:]]\n"
            "from cityvisor.cli import main\n"
            "main()\n")
    return subprocess.run([sys.executable, "-c", boot, *args], capture_output=True, text=True,
                          timeout=timeout, env=clean_env(), check=False)


def one_error_line(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    return lines[0]


def test_the_base_commands_need_no_extra() -> None:
    for args in (["--help"], ["version"], ["serve", "--help"], ["demo", "--help"],
                 ["flood", "--help"]):
        result = run_without(FLOOD, *args)
        assert result.returncode == 0, (args, result.stderr)
        assert "Traceback" not in result.stderr


def test_serve_with_the_flood_app_names_the_extra(tmp_path: Path) -> None:
    result = run_without(("tifffile",), "serve", "--apps", "flood", "--no-auth", "--port",
                         str(free_port()), "--data-dir", str(tmp_path / "data"))
    line = one_error_line(result)
    assert line == "error: the flood app " + LINE.format(module="tifffile")


def test_serve_with_the_flood_app_from_the_environment_names_the_extra(tmp_path: Path) -> None:
    boot_env = {**clean_env(), "CITYVISOR_APPS": '["flood"]'}
    boot = ("import sys\nsys.modules['scipy'] = None\nsys.argv = ['cityvisor', *sys.argv[1:]]\n"
            "from cityvisor.cli import main\nmain()\n")
    result = subprocess.run([sys.executable, "-c", boot, "serve", "--no-auth", "--port",
                             str(free_port()), "--data-dir", str(tmp_path / "data")],
                            capture_output=True, text=True, timeout=60, env=boot_env, check=False)
    assert one_error_line(result) == "error: the flood app " + LINE.format(module="scipy")


def test_an_extra_module_missing_inside_a_command_is_one_line(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    def command() -> None:
        import tifffile  # noqa: F401  (hidden below: as if cityvisor[flood] were not installed)

    monkeypatch.setitem(sys.modules, "tifffile", None)
    monkeypatch.setattr(cli, "app", command)
    with pytest.raises(SystemExit) as stopped:
        cli.main()
    assert stopped.value.code == 2
    err = capsys.readouterr().err
    assert err.strip() == "error: the flood app " + LINE.format(module="tifffile")


def test_any_other_import_error_is_a_bug_and_surfaces(monkeypatch: pytest.MonkeyPatch) -> None:
    def command() -> None:
        raise ModuleNotFoundError("No module named 'cityvisor.nowhere'", name="cityvisor.nowhere")

    monkeypatch.setattr(cli, "app", command)
    with pytest.raises(ModuleNotFoundError):
        cli.main()


def test_the_demo_runs_without_its_storm_when_the_flood_extra_is_missing() -> None:
    # in a process of its own: importing tifffile while imagecodecs is hidden would leave
    # tifffile without its codecs for the rest of this one
    boot = ("import sys\nsys.modules['imagecodecs'] = None\n"
            "from cityvisor.demo import DemoOptions, demo_extras\n"
            "warnings = []\n"
            "extra, scenario = demo_extras(DemoOptions(weather=False), warnings.append)\n"
            "assert extra == [] and scenario is None, (extra, scenario)\n"
            "print(*warnings, sep='\\n')\n")
    result = subprocess.run([sys.executable, "-c", boot], capture_output=True, text=True,
                            timeout=120, env=clean_env(), check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "No flood replay: the storm scenario of the demo (--scenario flood-2014) "
        + LINE.format(module="imagecodecs")]


def test_the_mapping_of_import_errors() -> None:
    missing = extra_of(ModuleNotFoundError("No module named 'scipy.ndimage'",
                                           name="scipy.ndimage"))
    assert missing is not None and missing.extra == "flood" and missing.module == "scipy"
    assert extra_of(ModuleNotFoundError("No module named 'numpy'", name="numpy")) is None
    assert extra_of(ImportError("cannot import name 'x'")) is None
    with (pytest.raises(MissingExtra, match=r"^the replay needs .*cityvisor\[flood\]"),
          requires_extra("the replay")):
        raise ModuleNotFoundError("No module named 'tifffile'", name="tifffile")
    with pytest.raises(KeyError), requires_extra("the replay"):
        raise KeyError("not an import error")
    require_extra("flood")  # installed in the test environment
