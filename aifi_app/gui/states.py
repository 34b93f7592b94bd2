"""How states look: a name in the user's language, a colour and an icon."""

from __future__ import annotations

from functools import cache

from PySide6.QtCore import QCoreApplication, Qt
from PySide6.QtGui import QBrush, QColor, QIcon, QPainter, QPixmap

IN_PROGRESS = ("receiving", "complete", "queued", "pseudonymised", "submitted", "result_received")
ATTENTION = ("failed", "rejected", "no_match")

_COLOURS = {
    "delivered": "#2e7d32",
    "failed": "#c62828",
    "rejected": "#ef6c00",
    "no_match": "#f9a825",
    "cancelled": "#757575",
    "recorded": "#757575",
    "routed": "#1565c0",
}
_IN_PROGRESS_COLOUR = "#1565c0"


def state_name(state: str) -> str:
    """The state in words, in the current language."""
    names = {
        "receiving": QCoreApplication.translate("States", "receiving"),
        "complete": QCoreApplication.translate("States", "complete"),
        "routed": QCoreApplication.translate("States", "routed"),
        "no_match": QCoreApplication.translate("States", "no matching algorithm"),
        "recorded": QCoreApplication.translate("States", "recorded (late)"),
        "queued": QCoreApplication.translate("States", "queued"),
        "pseudonymised": QCoreApplication.translate("States", "pseudonymised"),
        "submitted": QCoreApplication.translate("States", "at the algorithm"),
        "result_received": QCoreApplication.translate("States", "result ready"),
        "delivered": QCoreApplication.translate("States", "delivered"),
        "rejected": QCoreApplication.translate("States", "rejected"),
        "failed": QCoreApplication.translate("States", "failed"),
        "cancelled": QCoreApplication.translate("States", "cancelled"),
    }
    return names.get(state, state)


def event_name(event: str) -> str:
    """An audit event in words, in the current language (unknown ones as recorded)."""
    names = {
        "study_started": QCoreApplication.translate("Events", "first instance received"),
        "duplicate_instance": QCoreApplication.translate("Events", "instance received again"),
        "study_complete": QCoreApplication.translate("Events", "study complete"),
        "process_now": QCoreApplication.translate("Events", "process now (by hand)"),
        "routed": QCoreApplication.translate("Events", "assigned to algorithm"),
        "no_matching_route": QCoreApplication.translate("Events", "no matching algorithm"),
        "routing_failed": QCoreApplication.translate("Events", "routing failed"),
        "job_created": QCoreApplication.translate("Events", "job created"),
        "state_changed": QCoreApplication.translate("Events", "state changed"),
        "output_delivered": QCoreApplication.translate("Events", "result stored in PACS"),
        "send_failed": QCoreApplication.translate("Events", "sending failed"),
        "stored_before_failure": QCoreApplication.translate(
            "Events", "result stored in PACS before the job failed"
        ),
        "retry_scheduled": QCoreApplication.translate("Events", "new attempt scheduled"),
        "spool_removed": QCoreApplication.translate("Events", "images removed (retention)"),
        "store_refused": QCoreApplication.translate("Events", "instance refused"),
        "association_rejected": QCoreApplication.translate("Events", "connection refused"),
        "started": QCoreApplication.translate("Events", "appliance started"),
        "stopped": QCoreApplication.translate("Events", "appliance stopped"),
        "verdict": QCoreApplication.translate("Events", "verdict on the result"),
        "node_reachable": QCoreApplication.translate("Events", "node reachable"),
        "node_unreachable": QCoreApplication.translate("Events", "node not reachable"),
        "association_refused": QCoreApplication.translate("Events", "connection refused"),
        "tls_refused": QCoreApplication.translate("Events", "TLS connection refused"),
        "plain_http": QCoreApplication.translate("Events", "unencrypted HTTP allowed"),
        "crash": QCoreApplication.translate("Events", "appliance stopped unexpectedly"),
        "settings_changed": QCoreApplication.translate("Events", "settings changed"),
        "remote_nodes_changed": QCoreApplication.translate("Events", "nodes changed"),
        "admin_passphrase_set": QCoreApplication.translate("Events", "passphrase set"),
        "admin_unlocked": QCoreApplication.translate("Events", "configuration unlocked"),
        "admin_locked": QCoreApplication.translate("Events", "configuration locked"),
        "installed": QCoreApplication.translate("Events", "algorithm installed"),
        "removed": QCoreApplication.translate("Events", "algorithm removed"),
        "enabled": QCoreApplication.translate("Events", "algorithm enabled"),
        "disabled": QCoreApplication.translate("Events", "algorithm disabled"),
        "exported": QCoreApplication.translate("Events", "audit log exported"),
        "recorded": QCoreApplication.translate("Events", "recorded (late instances)"),
        "admin_unlock_refused": QCoreApplication.translate("Events", "wrong passphrase"),
        "instances_recovered": QCoreApplication.translate(
            "Events", "instances recovered after an unclean stop"
        ),
        "recovery_failed": QCoreApplication.translate("Events", "recovery of an instance failed"),
        "urgent_finding": QCoreApplication.translate("Events", "urgent finding"),
        "hl7_queued": QCoreApplication.translate("Events", "HL7 message queued"),
        "hl7_acknowledged": QCoreApplication.translate("Events", "HL7 message acknowledged"),
        "hl7_retry_scheduled": QCoreApplication.translate("Events", "HL7 message: new attempt"),
        "hl7_failed": QCoreApplication.translate("Events", "HL7 message failed"),
        "hl7_retry": QCoreApplication.translate("Events", "HL7 messages queued again"),
        "hl7_content_removed": QCoreApplication.translate(
            "Events", "HL7 message text removed (retention)"
        ),
    }
    if event.startswith("late_instances_"):
        return QCoreApplication.translate("Events", "late instances received")
    return names.get(event, event)


def state_colour(state: str) -> QColor:
    return QColor(_COLOURS.get(state, _IN_PROGRESS_COLOUR))


def state_background(state: str) -> QBrush:
    colour = state_colour(state)
    colour.setAlpha(40)
    return QBrush(colour)


@cache
def state_icon(state: str) -> QIcon:
    """A filled circle in the state's colour; a ring while the job is still moving."""
    pixmap = QPixmap(16, 16)
    pixmap.fill(Qt.GlobalColor.transparent)
    painter = QPainter(pixmap)
    painter.setRenderHint(QPainter.RenderHint.Antialiasing)
    colour = state_colour(state)
    if state in IN_PROGRESS:
        painter.setPen(colour)
        painter.setBrush(Qt.BrushStyle.NoBrush)
        painter.drawEllipse(3, 3, 10, 10)
        painter.setBrush(colour)
        painter.drawPie(3, 3, 10, 10, 90 * 16, -180 * 16)
    else:
        painter.setPen(Qt.PenStyle.NoPen)
        painter.setBrush(colour)
        painter.drawEllipse(2, 2, 12, 12)
    painter.end()
    return QIcon(pixmap)


def duration_text(seconds: float) -> str:
    """A short duration for the "time in stage" column: 45 s, 12 min, 3 h 5 min, 2 d 4 h."""
    s = max(0, int(seconds))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min"
    if s < 86400:
        return f"{s // 3600} h {s % 3600 // 60} min"
    return f"{s // 86400} d {s % 86400 // 3600} h"
