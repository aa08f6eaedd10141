"""The store lock's machine label (registry/store_locks.py): where it reads the machine's identity from, and when
a row's pid may be trusted as "this machine's process" (a dead one then holds nothing)."""

from __future__ import annotations

import os
from pathlib import Path

from modelarc.registry import store_locks

MID = "3d1219c7c4c5404aaa1f6d2a48adfda4"
BOOT = "0e5250a6-35b4-4ee6-9f12-f8682aa75a4e"


def _file(tmp_path: Path, name: str, text: str) -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def _label(tmp_path: Path, *, machine_ids: tuple[str, ...], boot: str | None) -> str:
    return store_locks.machine_label(
        "vm",
        machine_id_files=machine_ids,
        boot_id_file=_file(tmp_path, "boot_id", boot) if boot is not None else str(tmp_path / "no-boot-id"),
    )


def test_the_label_names_host_machine_boot_and_pid_namespace(tmp_path: Path) -> None:
    label = _label(tmp_path, machine_ids=(_file(tmp_path, "machine-id", MID + "\n"),), boot=BOOT + "\n")
    pidns = os.readlink("/proc/self/ns/pid").removeprefix("pid:[").removesuffix("]")
    assert label == f"vm/m2:{MID}:{BOOT.replace('-', '')}:{pidns}"
    assert store_locks.same_machine(label, label)


def test_an_empty_machine_id_falls_back_to_the_dbus_one(tmp_path: Path) -> None:
    """An image's /etc/machine-id is emptied so that each clone makes its own at first boot."""
    empty = _file(tmp_path, "etc-machine-id", "")
    dbus = _file(tmp_path, "dbus-machine-id", MID.upper())
    assert f"/m2:{MID}:" in _label(tmp_path, machine_ids=(empty, dbus), boot=BOOT)


def test_a_container_without_a_machine_id_still_trusts_its_own_pids(tmp_path: Path) -> None:
    """Containers of one host share its boot id; their PID namespaces tell them apart."""
    label = _label(tmp_path, machine_ids=(str(tmp_path / "none"),), boot=BOOT)
    assert "/m2:-:" in label
    assert store_locks.same_machine(label, label)


def test_without_a_boot_id_no_pid_is_trusted(tmp_path: Path) -> None:
    label = _label(tmp_path, machine_ids=(_file(tmp_path, "machine-id", MID),), boot="not an id")
    assert label.split(":")[2] == "-"  # m2, machine id, boot id, pid namespace
    assert not store_locks.same_machine(label, label)


def test_hosts_that_differ_only_in_boot_id_are_different_machines(tmp_path: Path) -> None:
    machine_id = (_file(tmp_path, "machine-id", MID),)
    one = _label(tmp_path, machine_ids=machine_id, boot=BOOT)
    clone = _label(tmp_path, machine_ids=machine_id, boot="1" * 32)
    assert not store_locks.same_machine(one, clone)


def test_a_row_of_the_old_format_is_never_this_machine() -> None:
    old = f"vm/{os.readlink('/proc/self/ns/pid')}"
    assert not store_locks.same_machine(old, old)
    assert not store_locks.same_machine("vm/-", "vm/-")
