"""What the embedded server (nx-27017 0.8.1) does differently from MongoDB, pinned.

Code here is plain pymongo and correct on MongoDB 7; where nx-27017 differs it uses a form that
works on both. Each test states the form the code uses and checks it behaves on this server
(with SRU_HPO_TEST_MONGO_URL pointing at a real MongoDB, they check it there too).
"""

from __future__ import annotations

import datetime


def test_datetimes_may_come_back_as_strings_so_times_are_floats(db):
    when = datetime.datetime(2026, 1, 2, 3, 4, 5, 678000, tzinfo=datetime.UTC)
    db.pin.insert_one({"_id": 1, "dt": when, "f": 1.5})
    d = db.pin.find_one({"_id": 1})
    assert d["f"] == 1.5
    if isinstance(d["dt"], str):  # nx-27017: the same instant, as text
        assert d["dt"].startswith("2026-01-02") and "03:04:05.678" in d["dt"]
    else:  # MongoDB: a datetime
        assert d["dt"] == when


def test_floats_set_at_top_level_keep_at_least_15_digits(db):
    v = 0.11388888888888889
    db.pin.insert_one({"_id": 1, "a": v, "n": {"a": v}})
    db.pin.update_one({"_id": 1}, {"$set": {"b": v}})
    d = db.pin.find_one({"_id": 1})
    assert d["a"] == v and d["n"]["a"] == v
    assert abs(d["b"] - v) < 1e-14


def test_id_beside_or_is_written_as_and(db):
    """nx-27017: in an update, a top-level _id next to $or is ignored."""
    db.pin.insert_many([{"_id": "a", "owner": "x"}, {"_id": "b", "owner": None}])
    miss = {"$and": [{"_id": "a"}, {"$or": [{"owner": {"$in": [None, "me"]}}]}]}
    assert db.pin.find_one_and_update(miss, {"$set": {"owner": "me"}}) is None
    hit = {"$and": [{"_id": "b"}, {"$or": [{"owner": {"$in": [None, "me"]}}]}]}
    assert db.pin.find_one_and_update(hit, {"$set": {"owner": "me"}})["_id"] == "b"
    assert {d["_id"]: d["owner"] for d in db.pin.find()} == {"a": "x", "b": "me"}


def test_null_inside_or_is_matched_with_in(db):
    """nx-27017: ``{"f": None}`` inside ``$or`` misses an explicit null (it matches only a
    missing field); ``{"f": {"$in": [None, ...]}}`` matches both, here and on MongoDB."""
    db.pin.insert_many([{"_id": 1, "f": None}, {"_id": 2}, {"_id": 3, "f": 5}])
    q = {"$or": [{"f": {"$in": [None]}}, {"f": 5}]}
    assert sorted(d["_id"] for d in db.pin.find(q)) == [1, 2, 3]


def test_fields_tested_in_update_filters_exist(db):
    """nx-27017: in an *update* filter, ``{"f": {"$ne": True}}`` matches no document that lacks
    ``f``. Study documents are created with ``deleted: False`` and filtered on equality."""
    db.pin.insert_many([{"_id": 1, "deleted": False}, {"_id": 2}])
    assert db.pin.update_one({"_id": 1, "deleted": False}, {"$set": {"x": 1}}).matched_count == 1
    db.pin.update_one({"_id": 1}, {"$set": {"deleted": True}})
    assert db.pin.update_one({"_id": 1, "deleted": False}, {"$set": {"x": 2}}).matched_count == 0


def test_booleans_set_by_update_still_match_booleans(db):
    """nx-27017 stores a ``$set`` boolean as 0/1; equality with True/False still matches."""
    db.pin.insert_one({"_id": 1, "s": False})
    db.pin.update_one({"_id": 1}, {"$set": {"s": True}})
    assert db.pin.count_documents({"s": True}) == 1 and db.pin.count_documents({"s": False}) == 0


def test_gridfs_keeps_metadata_and_finds_by_it(db):
    """Extra keyword fields of ``put`` are dropped by nx-27017; ``metadata`` is kept."""
    import gridfs

    fs = gridfs.GridFS(db, collection="pinfs")
    fs.put(b"x", filename="f", metadata={"exp_key": "s", "tid": 1})
    assert [f.metadata["tid"] for f in fs.find({"metadata.exp_key": "s"})] == [1]


def test_chunks_of_a_killed_gridfs_write_are_found_one_way_or_the_other(db):
    """GridFS writes its chunks first and the file document last. On MongoDB a writer killed in
    between leaves chunks with no file (``FileStore.unfinished`` finds them with ``distinct``);
    nx-27017 makes a file document with empty metadata for them instead (``all_files`` lists it),
    and answers ``distinct``/``find({})`` over a chunks collection with nothing. Either way the
    orphan collector sees the write, and ``GridFS.delete`` removes its chunks."""
    import gridfs
    from bson import ObjectId

    fs = gridfs.GridFS(db, collection="pinfs")
    killed = ObjectId()
    db["pinfs.chunks"].insert_one({"files_id": killed, "n": 0, "data": b"half"})
    listed = {f._id: f.metadata for f in fs.find()}
    chunk_owners = db["pinfs.chunks"].distinct("files_id")
    assert (listed == {killed: {}} and chunk_owners == []  # nx-27017
            or listed == {} and chunk_owners == [killed])  # MongoDB
    fs.delete(killed)
    assert db["pinfs.chunks"].find_one({"files_id": killed}) is None
    assert list(fs.find()) == []


def test_upsert_missing_an_existing_id_is_avoided(db):
    """nx-27017 answers an upsert whose filter misses an existing _id with None (MongoDB: a
    duplicate key error); leases are created with insert_one first, never upserted."""
    from pymongo.errors import DuplicateKeyError

    db.pin.insert_one({"_id": "k", "owner": "a"})
    try:
        r = db.pin.find_one_and_update({"_id": "k", "owner": "b"}, {"$set": {"owner": "b"}},
                                       upsert=True)
    except DuplicateKeyError:
        r = None
    assert r is None
    assert db.pin.find_one({"_id": "k"})["owner"] == "a"
