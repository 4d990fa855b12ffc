"""Fusion across sub-questions, de-duplication and MMR selection of passages."""

from __future__ import annotations

from tasks.research.selection import (
    distinct_passages,
    drop_duplicates,
    fuse_sub_questions,
    passage_budget,
    select_passages,
)
from tests.tasks.research.helpers import hits, passage

FIREWALL = "iptables-save stores the netfilter rules and iptables-restore loads them at boot."
FIREWALL_AGAIN = "iptables-save stores the netfilter rules; iptables-restore loads them at boot."
RAID = "The software RAID configuration of mdadm lives in /etc/mdadm/mdadm.conf."
MOUNTS = "Mount options of disks and network filesystems are set in /etc/fstab."


def test_fusion_merges_a_passage_found_twice_and_ranks_it_first() -> None:
    a, b, c = passage(1, FIREWALL), passage(2, RAID), passage(3, MOUNTS)
    fused = fuse_sub_questions([hits("q", [b, a]), hits("facet", [a, c])])
    assert [p.chunk_index for p in fused] == [1, 2, 3]
    assert fused[0].sub_questions == [0, 1]
    assert fused[1].sub_questions == [0]
    assert distinct_passages([hits("q", [b, a]), hits("facet", [a, c])]) == 3


def test_fusion_weighs_the_question_above_a_facet() -> None:
    a, b = passage(1, FIREWALL), passage(2, RAID)
    fused = fuse_sub_questions([hits("q", [a]), hits("facet", [b])])
    assert [p.chunk_index for p in fused] == [1, 2]


def test_fusion_keeps_the_best_raw_scores() -> None:
    first = passage(1, FIREWALL).model_copy(update={"dense": 0.4, "sparse": None})
    second = passage(1, FIREWALL).model_copy(update={"dense": 0.7, "sparse": 12.0})
    (fused,) = fuse_sub_questions([hits("q", [first]), hits("facet", [second])])
    assert (fused.dense, fused.sparse) == (0.7, 12.0)


def test_drop_duplicates_removes_a_near_copy_of_a_better_passage() -> None:
    kept = drop_duplicates([passage(1, FIREWALL), passage(7, FIREWALL_AGAIN), passage(2, RAID)])
    assert [p.chunk_index for p in kept] == [1, 2]


def test_mmr_prefers_a_new_topic_over_a_similar_better_passage() -> None:
    candidates = [
        passage(1, FIREWALL, score=1.0),
        passage(2, FIREWALL + " The rules file is plain text.", score=0.95),
        passage(3, RAID, score=0.7),
    ]
    chosen = select_passages(candidates, n=2, language="en")
    assert [p.chunk_index for p in chosen] == [1, 3]
    # relevance only: the two firewall passages
    chosen = select_passages(candidates, n=2, language="en", mmr_lambda=1.0)
    assert [p.chunk_index for p in chosen] == [1, 2]


def test_mmr_prefers_the_report_language() -> None:
    spanish = passage(1, "iptables-save guarda las reglas de netfilter.", language="es", score=1.0)
    english = passage(2, RAID, score=0.9)
    assert select_passages([spanish, english], n=1, language="en")[0].chunk_index == 2
    assert select_passages([spanish, english], n=1, language="es")[0].chunk_index == 1


def test_select_handles_nothing_and_budget_grows_with_depth() -> None:
    assert select_passages([], n=5, language="en") == []
    assert [passage_budget(d) for d in (1, 3, 5)] == [4, 8, 12]
