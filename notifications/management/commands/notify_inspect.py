"""``manage.py notify_inspect <user>``: what support needs to answer "why
didn't Alice get it?" (docs/operations.md, "Inspecting one user")."""

from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from notifications.inspection import UserReport, user_report


class Command(BaseCommand):
    help = (
        "Print one user's presence, sequence, unread count, latest notifications, "
        "push subscriptions and owed pushes."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("user_id", help="the user id (the JWT's sub)")
        parser.add_argument("--json", action="store_true", help="print one JSON object")

    def handle(self, *args: Any, **options: Any) -> None:
        report = user_report(options["user_id"])
        if options["json"]:
            self.stdout.write(json.dumps(report.as_json(), indent=2))
        else:
            self.stdout.write("\n".join(human(report)))


def human(report: UserReport) -> list[str]:
    lines = [
        f"user {report.user_id}",
        f"  last id {report.last_id}, purged through {report.purged_through}, "
        f"unread {report.unread}",
    ]
    lines += presence_lines(report)
    lines += push_lines(report)
    if not report.latest:
        lines.append("  no stored notifications")
        return lines
    lines.append(f"  latest {len(report.latest)} notifications (newest first):")
    for item in report.latest:
        state = f"read {item['read_at']}" if item["read"] else "unread"
        lines.append(
            f"    #{item['id']}  {item['created_at']}  {state}  {item['type']}  "
            f"from {item['source']}  event {item['event_id']}  {item['title']!r}"
        )
    return lines


def presence_lines(report: UserReport) -> list[str]:
    presence = report.presence
    if not presence.shared:
        return ["  connected: unknown here (no Redis: ask the server, GET .../presence)"]
    if not presence.connections:
        return ["  connected: no"]
    lines = [
        f"  connected: yes, {presence.connections} connection(s) "
        f"on {len(presence.processes)} process(es)"
    ]
    for item in presence.processes:
        where = f"{item.host} pid {item.pid}" if item.host else "unannounced process"
        lines.append(f"    {where} (process {item.process_id}): {item.connections}")
    return lines


def push_lines(report: UserReport) -> list[str]:
    push = report.push
    off = "" if push.enabled else " (Web Push is off here: no VAPID_PRIVATE_KEY)"
    lines = [f"  push subscriptions: {len(push.subscriptions)}{off}"]
    for sub in push.subscriptions:
        lines.append(f"    #{sub['id']}  {sub['endpoint']}  since {sub['created_at']}")
    owed = push.owed
    if not owed.count:
        lines.append("  owed pushes: none")
    else:
        lines.append(
            f"  owed pushes: {owed.count}, oldest committed {owed.oldest_committed_at}, "
            f"next attempt {owed.next_attempt_at}, most attempts {owed.most_attempts}"
        )
    return lines
