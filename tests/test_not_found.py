"""One wording for "no such object" (storage.errors.unknown) and one site-scope check
(gateway.auth.Principal.check_site), which makes another site's objects look unknown."""

from __future__ import annotations

import pytest

from gateway.auth import Principal
from storage.errors import NotFound, unknown, unknown_dg, unknown_meter, unknown_site


def test_unknown_objects_are_worded_one_way() -> None:
    site = unknown_site("S1")
    assert (site.message, site.errors) == ("unknown site 'S1'", {"site_id": ["Unknown site."]})
    listed = unknown_site("S9", "sites")
    assert (listed.message, listed.errors) == ("unknown site 'S9'", {"sites": ["Unknown site 'S9'."]})
    meter = unknown_meter(5)
    assert (meter.message, meter.errors) == ("unknown meter 5", {"meter_no": ["Unknown meter."]})
    dg = unknown_dg("S1", "DG1")
    assert (dg.message, dg.errors) == ("unknown DG 'DG1' on site 'S1'", {"dg_number": ["Unknown DG."]})
    account = unknown("account", "ann", field="account", reason="No such account.")
    assert (account.message, account.errors) == ("unknown account 'ann'", {"account": ["No such account."]})


def test_a_key_sees_its_sites_and_other_sites_look_unknown() -> None:
    key = Principal(name="k", role="admin", sites=frozenset({"S1", "S2"}))
    key.check_site("S1")
    with pytest.raises(NotFound) as default:
        key.check_site("S3")
    assert default.value.message == "unknown site 'S3'"
    with pytest.raises(NotFound) as worded:
        key.check_site("S3", unknown_meter(7))  # the caller's own words for the object asked for
    assert worded.value.message == "unknown meter 7"
    key.check_sites(["S2", "S1"])
    with pytest.raises(NotFound) as listed:
        key.check_sites(["S1", "S4", "S5"])
    assert listed.value.errors == {"sites": ["Unknown site 'S4'."]}
    assert key.covers(["S1", "S2"]) and not key.covers(["S1", "*"])
    every = Principal(name="all", role="admin", sites=frozenset({"*"}))
    every.check_sites(["S4", "*"])
    assert every.covers(["S9"])
