"""wording: counts of one are singular in every layer's messages."""

from __future__ import annotations

from hangar_git.history_tools.remote_purge import RemotePurge
from hangar_git.wording import are, plural, were


def test_plural_and_verbs_follow_the_count():
    assert plural(1, "payload") == "1 payload"
    assert plural(0, "payload") == "0 payloads"
    assert plural(2, "sound block") == "2 sound blocks"
    assert plural(3, "entry", "entries") == "3 entries"
    assert (are(1), are(2), were(1), were(0)) == ("is", "are", "was", "were")


def test_a_data_remote_purge_of_one_payload_says_one():
    rep = RemotePurge(remote="origin", dry_run=False, packs={"p1": "p2"}, removed=1)
    assert rep.summary() == "data remote 'origin': removed 1 payload (1 pack rewritten)"
