"""Found by the outside attack pass: plotly reads `<a href>`, `<b>` and `<br>` in labels as markup, so an ingested
run whose model was `<a href="http://evil.example/phish">CLICK</a>` put the tenant's link in the dashboards' legend
and axes (its own org's dashboards; no script). Chart labels a tenant chose are now plain text."""

from __future__ import annotations

from evals.dashboards import runs_frame
from tests.factories import make_run

LINK = '<a href="http://evil.example/phish">CLICK</a>'


def test_a_model_name_holding_markup_is_shown_as_text(alice):
    make_run(alice.org, model=LINK)
    frame = runs_frame(alice.org)
    assert list(frame["model"]) == ['\u2039a href="http://evil.example/phish"\u203aCLICK\u2039/a\u203a']
    assert not any("<" in str(value) for value in frame["model"])
