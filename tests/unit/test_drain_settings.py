"""``DRAIN_DELAY_S``: parsed like any setting, 5 s for the api role and 0 for a worker
unless set (see authnode.runtime for what the delay does)."""

from __future__ import annotations

import pytest

from authnode.settings import SettingsError, for_role, load_settings
from authnode.tuning import HostResources

HOST = HostResources(cpus=2, memory_bytes=8 << 30)


def test_the_default_is_five_seconds_for_the_api_and_zero_for_a_worker() -> None:
    settings = load_settings({}, host=HOST)
    assert settings.drain_delay_s == 5
    assert for_role(settings, "api").drain_delay_s == 5
    assert for_role(settings, "all").drain_delay_s == 5
    worker = for_role(settings, "worker")
    assert worker.drain_delay_s == 0
    assert worker.sources["DRAIN_DELAY_S"] == "default for --role worker"


def test_a_value_set_anywhere_wins_for_every_role() -> None:
    settings = load_settings({"DRAIN_DELAY_S": "1.5"}, host=HOST)
    assert for_role(settings, "worker").drain_delay_s == 1.5
    assert for_role(settings, "api").drain_delay_s == 1.5
    assert load_settings({"DRAIN_DELAY_S": "0"}, host=HOST).drain_delay_s == 0


@pytest.mark.parametrize("raw", ["-1", "soon", "nan", "inf", ""])
def test_a_bad_value_names_the_variable(raw: str) -> None:
    with pytest.raises(SettingsError) as caught:
        load_settings({"DRAIN_DELAY_S": raw}, host=HOST)
    assert caught.value.variable == "DRAIN_DELAY_S"
    assert "seconds >= 0" in str(caught.value)
