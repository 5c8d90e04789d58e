"""The warehouse on the real PostgreSQL and on SQLite: the same rows back, atomic partition swaps."""

from __future__ import annotations

from datetime import datetime

import pandas as pd
import pytest
import sqlalchemy as sa

from sact_pipeline.warehouse import LayerState, Warehouse, clean_file_versions, layer_state, rejected_files

WHERE = {"reporting_month": "2024-01", "trust_code": "RR8"}


def versions(*rows) -> pd.DataFrame:
    records = []
    for sha, name, rows_in in rows:
        records.append({**WHERE, "org_code": "RR8", "file_sha256": sha, "file_name": name, "submitted_at": datetime(2024, 2, 10, 9, 30),
                        "in_use": sha == "b" * 64, "patients": 1, "regimens": 2, "cycles": 3,
                        "drug_administrations": rows_in, "raw_rows": rows_in, "clean_rows": rows_in,
                        "quarantined_rows": 0, "duplicate_rows": 0, "data_quality_findings": 0, "opted_out_rows": 0,
                        "pseudonymisation_key_id": "0123456789abcdef"})
    return pd.DataFrame(records)


def test_rows_come_back_typed_the_same_on_both_databases(warehouse):
    frame = versions(("a" * 64, 'odd, "quoted"\nname.csv', 5), ("b" * 64, "SACT_RR8.csv", 7))
    warehouse.replace_partition(WHERE, {clean_file_versions: frame}, LayerState("clean", "2024-01", "RR8", "f" * 64, 12))
    back = warehouse.read(clean_file_versions, **WHERE).sort_values("file_sha256").reset_index(drop=True)
    assert back["file_name"].tolist() == ['odd, "quoted"\nname.csv', "SACT_RR8.csv"]
    assert back["in_use"].tolist() == [False, True]
    assert back["submitted_at"].tolist() == [pd.Timestamp("2024-02-10 09:30")] * 2
    assert back["drug_administrations"].tolist() == [5, 7]
    assert str(back["drug_administrations"].dtype) == "Int64"
    assert warehouse.layer_states("clean") == {("2024-01", "RR8"): "f" * 64}


def test_replacing_a_partition_is_atomic(warehouse):
    warehouse.replace_partition(WHERE, {clean_file_versions: versions(("a" * 64, "first.csv", 5))})
    broken = versions(("b" * 64, "second.csv", 7))
    broken["file_name"] = None  # NOT NULL column: the insert fails after the delete ran
    broken["pseudonymisation_key_id"] = "9434765919"  # stands for a row value that must not be echoed
    with pytest.raises(sa.exc.IntegrityError) as caught:
        warehouse.replace_partition(WHERE, {clean_file_versions: broken},
                                    LayerState("clean", "2024-01", "RR8", "x", 1))
    assert "9434765919" not in str(caught.value)  # row values never reach logs through an error
    assert warehouse.read(clean_file_versions, **WHERE)["file_name"].tolist() == ["first.csv"]
    assert warehouse.read(layer_state).empty


def test_other_partitions_are_left_alone(warehouse):
    warehouse.replace_partition(WHERE, {clean_file_versions: versions(("a" * 64, "rr8.csv", 5))})
    other = versions(("c" * 64, "rbv.csv", 3)).assign(trust_code="RBV")
    warehouse.replace_partition({**WHERE, "trust_code": "RBV"}, {clean_file_versions: other})
    warehouse.replace_partition(WHERE, {clean_file_versions: versions(("b" * 64, "rr8-v2.csv", 6))})
    assert sorted(warehouse.read(clean_file_versions)["file_name"]) == ["rbv.csv", "rr8-v2.csv"]


def test_registering_files_twice_keeps_one_record(warehouse):
    rejection = pd.DataFrame([{"sha256": "d" * 64, "relative_path": "x/bad.csv", "file_name": "bad.csv",
                               "size_bytes": 3, "reason": "empty file", "rejected_at": datetime(2024, 3, 1)}])
    warehouse.register_files(pd.DataFrame(), rejection)
    warehouse.register_files(pd.DataFrame(), rejection)
    assert len(warehouse.read(rejected_files)) == 1


def test_dates_times_and_missing_values_round_trip_on_both_databases(warehouse):
    """SQLite rows are written as plain tuples with dates formatted column by column: they must read back
    exactly as PostgreSQL's do (microseconds, missing dates, booleans, counts)."""
    from sact_pipeline.warehouse import clean_activity

    rows = 3
    frame = pd.DataFrame({c.name: [None] * rows for c in clean_activity.columns})
    for column in clean_activity.columns:
        if isinstance(column.type, sa.DateTime):
            frame[column.name] = pd.to_datetime(["2024-02-10 09:30:00.123456", "2024-02-11", None])
        elif isinstance(column.type, sa.Date):
            frame[column.name] = pd.to_datetime(["2024-01-08", None, "2024-01-31"])
        elif isinstance(column.type, sa.Boolean):
            frame[column.name] = [True, False, None]
        elif isinstance(column.type, (sa.Integer, sa.BigInteger)):
            frame[column.name] = pd.array([1, None, 3], dtype="Int64")
        elif isinstance(column.type, sa.Float):
            frame[column.name] = [1.5, None, 70.25]
        else:
            frame[column.name] = ["a", None, 'odd, "quoted"']
    frame = frame.assign(**WHERE, row_number=[1, 2, 3])
    for column in clean_activity.columns:  # the key and NOT NULL columns get values on every row
        if not column.nullable and frame[column.name].isna().any():
            frame[column.name] = frame[column.name].ffill().bfill()
    warehouse.replace_partition(WHERE, {clean_activity: frame})
    back = warehouse.read(clean_activity, **WHERE).sort_values("row_number").reset_index(drop=True)
    for column in clean_activity.columns:
        if isinstance(column.type, sa.DateTime):
            assert back[column.name].tolist()[:2] == [pd.Timestamp("2024-02-10 09:30:00.123456"),
                                                      pd.Timestamp("2024-02-11")], column.name
        elif isinstance(column.type, sa.Date):
            assert back[column.name].tolist()[0] == pd.Timestamp("2024-01-08"), column.name
            assert back[column.name].isna().tolist()[1] == frame[column.name].isna().tolist()[1], column.name
        elif isinstance(column.type, (sa.Integer, sa.BigInteger, sa.Float, sa.Boolean, sa.String)):
            assert back[column.name].isna().tolist() == frame[column.name].isna().tolist(), column.name


def test_a_column_added_since_a_warehouse_was_made_is_added_with_its_default(warehouse_url):
    warehouse = Warehouse(warehouse_url)
    warehouse.replace_partition(WHERE, {clean_file_versions: versions(("b" * 64, "f.csv", 3))})
    name = "clean.clean_file_versions" if warehouse.is_postgres else "clean_file_versions"
    with warehouse.engine.begin() as connection:  # a warehouse of the version before opt-outs
        connection.exec_driver_sql(f"ALTER TABLE {name} DROP COLUMN opted_out_rows")
    warehouse.dispose()
    again = Warehouse(warehouse_url)
    assert again.read(clean_file_versions)["opted_out_rows"].tolist() == [0]
    again.dispose()
