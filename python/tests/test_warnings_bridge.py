"""The warnings bridge: shown warnings go to the sink when it takes them, else to the previous showwarning."""

import sys
import warnings
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from interop_helpers import warnings_bridge  # noqa: E402


@pytest.fixture
def restored():
    saved = warnings.showwarning
    yield
    warnings.showwarning = saved
    warnings_bridge._state["sink"] = None


def test_a_sink_that_takes_the_warning_gets_its_fields_and_nothing_is_printed(restored, capsys):
    seen = []
    warnings_bridge.install(lambda *fields: seen.append(fields) or True)
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings.warn("bridge-taken", RuntimeWarning)
    assert len(seen) == 1
    category, message, filename, lineno = seen[0]
    assert (category, message) == ("RuntimeWarning", "bridge-taken")
    assert filename.endswith("test_warnings_bridge.py") and lineno > 0
    assert "bridge-taken" not in capsys.readouterr().err


def test_a_sink_that_declines_leaves_the_warning_to_the_previous_showwarning(restored):
    printed = []
    warnings.showwarning = lambda message, *rest: printed.append(str(message))
    warnings_bridge.install(lambda *fields: False)
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings.warn("bridge-declined", UserWarning)
    assert printed == ["bridge-declined"]


def test_install_wraps_once_and_later_calls_replace_the_sink(restored):
    first, second = [], []
    warnings_bridge.install(lambda *f: first.append(f) or True)
    wrapped = warnings.showwarning
    warnings_bridge.install(lambda *f: second.append(f) or True)
    assert warnings.showwarning is wrapped
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings.warn("bridge-second", DeprecationWarning)
    assert (first, len(second)) == ([], 1)
    assert second[0][0] == "DeprecationWarning"


def test_qualified_names_for_warning_classes_outside_builtins(restored):
    seen = []
    warnings_bridge.install(lambda *f: seen.append(f) or True)

    class LocalWarning(UserWarning):
        pass

    with warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings.warn("bridge-local", LocalWarning)
    assert seen[0][0].endswith("LocalWarning") and "." in seen[0][0]


def test_the_sink_is_dropped_at_exit(restored):
    seen = []
    warnings.showwarning = lambda *args, **kwargs: None
    warnings_bridge.install(lambda *f: seen.append(f) or True)
    warnings_bridge._detach()  # what the atexit handler does
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings.warn("bridge-after-exit")
    assert seen == []
