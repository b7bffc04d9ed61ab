"""`runhook status` of a cluster node, in words: the node, what it sees of NATS and
its history mirror, and a table of every partition's health."""

from __future__ import annotations

from typing import Any

from runhook.cli.show import table


def cluster_lines(c: dict[str, Any]) -> list[str]:
    owned = ", ".join(str(p) for p in c["partitions"]) or "none"
    out = [(f"cluster node {c['node']}: live nodes {', '.join(c['live'])}; "
            f"owns partitions {owned} of {c['of']}")]
    if "nats" in c:  # what this node can see of NATS, its history mirror and partitions
        n, m = c["nats"], c["mirror"]
        reach = "answers" if n["jetstream"] else \
            f"UNREACHABLE ({n['last_error'] or 'no answer yet'})"
        lag = "?" if m["lag"] is None else m["lag"]
        out.append(f"  NATS JetStream {reach}; history mirror {lag} behind"
                   f"{' (WEDGED: ' + (m['failing'] or 'no progress') + ')' if m['wedged'] else ''}"
                   f", {sum(m['rejected'].values())} foreign records refused")
        if n.get("unauthenticated"):
            out.append(f"  WARNING: {n['unauthenticated']}")
    if c.get("partition_status"):
        out.append("")
        out.extend(partitions(c["partition_status"]))
    return out


def partitions(rows: list[dict[str, Any]]) -> list[str]:
    """One line per partition; a corrupt checkpoint or a failure in full at its end."""
    header = ("PARTITION", "OWNER", "STATE", "LAG", "CHECKPOINT", "BY", "AGE", "FAILURES",
              "PROBLEM")
    body = []
    for p in rows:
        point = p.get("checkpoint")
        age = "" if not point or point["age_s"] is None else f"{point['age_s']:.0f}s"
        failures = str(p["failures"]) if p["failures"] else ""
        if p.get("retry_in_s") is not None:
            failures += f" (next in {p['retry_in_s']:.0f}s)"
        problem = "; ".join(dict.fromkeys(x for x in (p.get("corrupt"), p.get("failing")) if x))
        body.append((str(p["number"]), p["owner"] or "-", p["state"],
                     "" if p.get("lag") is None else str(p["lag"]),
                     str(point["seq"]) if point else "", point["node"] if point else "",
                     age, failures, problem))
    return table(header, body)
