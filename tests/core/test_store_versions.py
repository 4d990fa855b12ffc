"""Collection versions behind the alias, in both stores: build, mirror, swap, roll back, drop."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from qdrant_client import QdrantClient

from core.store import StoreError, VectorStore
from core.store.edge import EdgeStore
from core.store.server import ServerStore
from tests.core.test_store import ALIAS, DIM, alias_target, edge_store, make_points

pytestmark = pytest.mark.filterwarnings("ignore:Payload indexes have no effect:UserWarning")


@pytest.fixture(params=["edge", "server"])
def ready(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[VectorStore]:
    """Each implementation with its first version live."""
    if request.param == "edge":
        made: VectorStore = edge_store(tmp_path / "store")
    else:
        made = ServerStore(QdrantClient(path=str(tmp_path / "qdrant")), ALIAS, batch_size=7)
    made.ensure_collection(DIM)
    yield made
    made.close()


def _roles(store: VectorStore) -> dict[str, tuple[bool, bool]]:
    return {v.name: (v.live, v.building) for v in store.versions()}


def test_create_version_is_next_and_building(ready: VectorStore) -> None:
    ready.upsert(make_points("t1", "doc", 3))
    built = ready.create_version(DIM, owner="run-1")
    assert (built.name, built.number, built.owner) == (f"{ALIAS}_v2", 2, "run-1")
    assert _roles(ready) == {f"{ALIAS}_v1": (True, False), f"{ALIAS}_v2": (False, True)}
    assert ready.at(built.name).count() == 0
    assert ready.count() == 3


def test_writes_mirrored_to_building_version(ready: VectorStore) -> None:
    built = ready.create_version(DIM)
    ready.upsert(make_points("t1", "doc", 5))
    ready.upsert(make_points("t1", "gone", 2))
    ready.delete_documents("t1", ["gone"])
    pinned = ready.at(built.name)
    assert pinned.count("t1") == ready.count("t1") == 5
    # a write through the pinned view reaches that version only
    pinned.upsert(make_points("t2", "only-new", 4))
    assert (pinned.count("t2"), ready.count("t2")) == (4, 0)
    assert pinned.tenants() == ["t1", "t2"]
    assert ready.tenants() == ["t1"]


def test_activate_swaps_and_retires_previous(ready: VectorStore) -> None:
    ready.upsert(make_points("t1", "old", 2))
    built = ready.create_version(DIM)
    ready.at(built.name).upsert(make_points("t1", "new", 3))
    ready.activate(built.name)
    assert alias_target(ready) == built.name
    assert set(ready.documents("t1")) == {"new"}
    versions = {v.name: v for v in ready.versions()}
    assert versions[f"{ALIAS}_v1"].retired_at is not None
    assert not versions[built.name].building
    # rollback is one more swap; the version rolled back from is retired in turn
    ready.activate(f"{ALIAS}_v1")
    assert set(ready.documents("t1")) == {"old"}
    assert {v.name: v.retired_at is not None for v in ready.versions()} == {
        f"{ALIAS}_v1": False,
        built.name: True,
    }


def test_drop_version_refuses_live(ready: VectorStore) -> None:
    built = ready.create_version(DIM)
    with pytest.raises(StoreError):
        ready.drop_version(f"{ALIAS}_v1")
    ready.drop_version(built.name)
    assert [v.name for v in ready.versions()] == [f"{ALIAS}_v1"]
    # no building alias left: writes go to the live version only, and succeed
    ready.upsert(make_points("t1", "doc", 2))
    assert ready.count() == 2
    assert ready.create_version(DIM).number == 2


def test_scroll_doc_ids_restricts(ready: VectorStore) -> None:
    ready.upsert(make_points("t1", "a", 3) + make_points("t1", "b", 2))
    assert {p.doc_id for _, p in ready.scroll("t1", ["b"])} == {"b"}
    assert len(ready.scroll("t1", ["b"])) == 2


def test_edge_versions_survive_reopen(tmp_path: Path) -> None:
    first = edge_store(tmp_path / "store")
    first.ensure_collection(DIM)
    built = first.create_version(DIM, owner="run-9")
    again = EdgeStore(tmp_path / "store", ALIAS, lock_timeout_s=10, batch_size=7)
    assert [(v.name, v.owner, v.building) for v in again.versions()] == [
        (f"{ALIAS}_v1", None, False),
        (built.name, "run-9", True),
    ]
