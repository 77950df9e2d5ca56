"""Which libraries delivered an accepted export for a period (on time, late, not at all), and the reminders.

An export delivers for a period when it is accepted (batch ``applied``; ``unchanged`` too once ingest records
it) after the previous period's deadline; on or before the deadline day it is on time. Before a deadline, the
reminder check e-mails each group's lead library the members that have not delivered yet and the education
office the whole list, in Vietnamese, through the Airflow SMTP connection named in the registry. Each reminder
is written once per (period, days before, recipient), so a re-run of the check sends nothing twice.
"""
from __future__ import annotations

import html
import logging
import os
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

import sqlalchemy as sa

from lienthong import periods
from lienthong.periods import Period
from lienthong.registry import Registry, load_registry

log = logging.getLogger(__name__)

SMTP_CONN_ENV = "LIENTHONG_SMTP_CONN_ID"
STATUS_VI = {"on_time": "Đúng hạn", "late": "Muộn", "missing": "Chưa nộp"}


@dataclass
class Submission:
    library_code: str
    library_name: str
    status: str  # on_time | late | missing
    accepted_at: datetime | None
    batch_id: int | None
    last_delivery_status: str | None  # newest delivery in the window, e.g. held: why a library is missing
    groups: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"library": self.library_code, "name": self.library_name, "status": self.status,
                "status_vi": STATUS_VI[self.status],
                "accepted_at": self.accepted_at.isoformat() if self.accepted_at else None,
                "batch_id": self.batch_id, "last_delivery_status": self.last_delivery_status, "groups": self.groups}


def track(engine: sa.Engine, period: Period, *, checked_at: datetime | None = None,
          registry: Registry | None = None) -> list[Submission]:
    """Every library active at the period's end, with its submission status as seen at ``checked_at``."""
    registry = registry or load_registry()
    cal = registry.reporting
    checked_at = checked_at or datetime.now(periods.TIMEZONE)
    with engine.connect() as conn:
        rows = {row.library_code: row for row in conn.execute(
            sa.text("SELECT * FROM marts.period_submissions(:opens, :due, :checked)"),
            {"opens": periods.submission_opens(period, cal), "due": period.due_at, "checked": checked_at})}
    out = []
    for lib in registry.active_libraries(period.end):
        row = rows.get(lib.code)
        groups = [g.code for g in registry.groups_of(lib.code, period.end)]
        if row is None:  # not yet in the warehouse's dimensions
            out.append(Submission(lib.code, lib.name, "missing", None, None, None, groups))
            continue
        out.append(Submission(lib.code, lib.name, row.status, row.accepted_at, row.batch_id,
                              row.last_delivery_status, groups))
    return out


def summary(submissions: list[Submission]) -> dict:
    counts = {status: 0 for status in STATUS_VI}
    for sub in submissions:
        counts[sub.status] += 1
    return {"libraries": len(submissions), **counts,
            "late": sorted(s.library_code for s in submissions if s.status == "late"),
            "missing": sorted(s.library_code for s in submissions if s.status == "missing"),
            "counts": counts}


# ---------------------------------------------------------------- reminders

@dataclass
class Reminder:
    role: str  # lead_library | education_office
    recipient: str
    group_code: str
    libraries: list[Submission]
    subject: str
    body_html: str


def _table(rows: list[Submission]) -> str:
    lines = "".join(
        f"<tr><td>{html.escape(s.library_code)}</td><td>{html.escape(s.library_name)}</td>"
        f"<td>{html.escape(_delivery_vi(s))}</td></tr>" for s in rows)
    return ("<table border='1' cellpadding='4' cellspacing='0'><tr><th>Mã thư viện</th><th>Tên thư viện</th>"
            f"<th>Tình trạng</th></tr>{lines}</table>")


def _delivery_vi(sub: Submission) -> str:
    if sub.last_delivery_status == "held":
        return "Đã gửi nhưng bị giữ lại (số biểu ghi giảm bất thường), cần kiểm tra và gửi lại"
    if sub.last_delivery_status == "failed":
        return "Đã gửi nhưng không đọc được tệp, cần gửi lại"
    return "Chưa gửi dữ liệu xuất"


def plan_reminders(engine: sa.Engine, period: Period, today: date, *, registry: Registry | None = None,
                   checked_at: datetime | None = None) -> list[Reminder]:
    """The reminders due on ``today`` (a configured number of days before the deadline), not yet sent."""
    registry = registry or load_registry()
    cal = registry.reporting
    days = periods.days_to_due(period, today)
    if days not in cal.reminder_days:
        return []
    if checked_at is None:  # as seen at the end of `today`, so a check replayed for a past day sees that day
        checked_at = min(datetime.now(periods.TIMEZONE), periods.local_midnight(today + timedelta(days=1)))
    missing = [s for s in track(engine, period, checked_at=checked_at, registry=registry) if s.status == "missing"]
    if not missing:
        return []
    due_vi = period.due.strftime("%d/%m/%Y")
    subject = f"[Liên thông thư viện] Nhắc nộp dữ liệu báo cáo {period.name_vi} (hạn {due_vi})"
    intro = (f"<p>Kính gửi {{who}},</p><p>Còn {days} ngày đến hạn nộp báo cáo <b>{html.escape(period.name_vi)}</b> "
             f"(trước ngày {due_vi}, theo Hướng dẫn liên thông thư viện, mục VI). Hệ thống chưa nhận được dữ liệu "
             f"xuất hợp lệ kể từ kỳ báo cáo trước của các thư viện sau:</p>")
    outro = ("<p>Đề nghị các thư viện xuất toàn bộ dữ liệu biên mục (MARC21) và gửi vào thư mục/nguồn đã đăng ký "
             "trước hạn.</p><p>Thư này được gửi tự động từ hệ thống Liên thông thư viện.</p>")
    reminders = []
    for group in registry.active_groups(period.end):
        members = set(group.member_codes(period.end))
        rows = [s for s in missing if s.library_code in members]
        recipient = cal.email_of(group.lead_library)
        if rows and recipient:
            lead = registry.libraries[group.lead_library].name
            who = html.escape(f"{lead}, thư viện chủ trì {group.name}")
            reminders.append(Reminder("lead_library", recipient, group.code, rows, subject,
                                      intro.format(who=who) + _table(rows) + outro))
    if cal.education_office_email:
        who = html.escape(cal.education_office_name or "Văn phòng Sở GD&ĐT")
        reminders.append(Reminder("education_office", cal.education_office_email, "", missing,
                                  f"{subject}: {len(missing)} thư viện chưa nộp",
                                  intro.format(who=who) + _table(missing) + outro))
    with engine.connect() as conn:
        sent = {(r.role, r.recipient, r.group_code) for r in conn.execute(
            sa.text("SELECT role, recipient, group_code FROM reporting.reminder "
                    "WHERE period = :p AND days_before = :d"), {"p": period.code, "d": days})}
    return [r for r in reminders if (r.role, r.recipient, r.group_code) not in sent]


def smtp_conn_id(registry: Registry | None = None) -> str:
    return os.environ.get(SMTP_CONN_ENV) or (registry or load_registry()).reporting.smtp_conn_id


def send_reminders(engine: sa.Engine, period: Period, today: date, *, registry: Registry | None = None,
                   checked_at: datetime | None = None) -> dict:
    """Send today's reminders through the SMTP connection and record each one; returns a small summary."""
    from airflow.providers.smtp.hooks.smtp import SmtpHook

    registry = registry or load_registry()
    reminders = plan_reminders(engine, period, today, registry=registry, checked_at=checked_at)
    days = periods.days_to_due(period, today)
    sent = []
    if reminders:
        with SmtpHook(smtp_conn_id=smtp_conn_id(registry)) as hook:
            for reminder in reminders:
                hook.send_email_smtp(to=reminder.recipient, subject=reminder.subject, html_content=reminder.body_html,
                                     from_email=registry.reporting.sender or None)
                with engine.begin() as conn:
                    conn.execute(sa.text(
                        """INSERT INTO reporting.reminder (period, days_before, role, recipient, group_code,
                                                           library_codes, subject)
                           VALUES (:p, :d, :role, :to, :g, :libs, :subject)
                           ON CONFLICT DO NOTHING"""),
                        {"p": period.code, "d": days, "role": reminder.role, "to": reminder.recipient,
                         "g": reminder.group_code, "libs": [s.library_code for s in reminder.libraries],
                         "subject": reminder.subject})
                sent.append({"role": reminder.role, "to": reminder.recipient, "group": reminder.group_code or None,
                             "libraries": len(reminder.libraries)})
                log.info("reminder for %s sent to %s (%d libraries)", period.code, reminder.recipient,
                         len(reminder.libraries))
    return {"period": period.code, "today": today.isoformat(), "days_to_due": days, "sent": sent}
