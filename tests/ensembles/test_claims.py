"""The paper's claims are computed from the numbers."""

from __future__ import annotations

from ensembles.claims import paper_claims


def _pairs(barriers, label_threshold=0.5):
    return [{"a": f"member-{i}", "b": f"member-{i + 1}", "acc_barrier_test": b,
             "label": "same basin" if b < label_threshold else "different basin"}
            for i, b in enumerate(barriers, start=1)] + \
        [{"a": "member-1", "b": "member-3", "acc_barrier_test": 9.0, "label": "different basin"}]


def _table(acc, soup, member=99.0, ood_soup=60.0):
    return [{"size": 1, "accuracy": 98.0}, {"size": 2, "accuracy": acc, "soup_accuracy": soup,
                                            "member_accuracy": member,
                                            "ood_soup_accuracy": ood_soup}]


def test_claims_follow_the_numbers():
    tables = {"local-de": _table(90, 90), "sse-local": _table(91, 91, member=95),
              "sse-semilocal": _table(89, 88, member=93), "starsse-local": _table(92, 92.5),
              "starsse-semilocal": _table(90, 89, ood_soup=70)}
    pairs = {"sse-local": _pairs([0.1, 0.2]), "sse-semilocal": _pairs([1.5, 0.1])}
    claims = {c["claim"].split(";")[0].split(" beats")[0]: c for c in paper_claims(tables, pairs)}
    assert len(claims) == 6
    drop = claims["Semi-local SSE shows an accuracy drop in the middle of the path between "
                  "consecutive snapshots"]
    assert drop["holds"] and "0.80 pp" in drop["evidence"]  # mean of 1.5 and 0.1
    assert claims["The best StarSSE ensemble"]["holds"]
    assert "starsse-local 92.00%" in claims["The best StarSSE ensemble"]["evidence"]
    assert all(c["holds"] for c in claims.values())
    # the same claims fail when the numbers say otherwise
    pairs = {"sse-local": _pairs([0.1, 0.2]), "sse-semilocal": _pairs([0.3, 0.1])}
    tables["starsse-local"] = _table(88, 85)
    tables["starsse-semilocal"] = _table(87, 84, ood_soup=50)
    failed = [c for c in paper_claims(tables, pairs) if not c["holds"]]
    assert len(failed) == 5  # all but "semi-local SSE members are less accurate"
