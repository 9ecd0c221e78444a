"""Typed application keys shared by the handlers."""

from __future__ import annotations

from aiohttp import web

from factory.config import StationConfig
from factory.journal.interface import Journal
from factory.labels.making import LabelMaker
from factory.status.feed import StatusFeed
from factory.status.metrics import Metrics
from factory.status.snapshot import LiveSources
from factory.units.scans import ScanDesk
from factory.web.auth import TokenCache

CONFIG = web.AppKey("config", StationConfig)
JOURNAL = web.AppKey("journal", Journal)
TOKENS = web.AppKey("tokens", TokenCache)
METRICS = web.AppKey("metrics", Metrics)
LIVE = web.AppKey("live", LiveSources)
STATUS_FEED = web.AppKey("status_feed", StatusFeed)
# Makes the labels of units their agent serializes (none: labels are not made by this app).
LABEL_MAKER = web.AppKey("label_maker", LabelMaker)
# The fixtures that take label scans (POST /api/v1/fixtures/{name}/scan).
SCAN_DESK = web.AppKey("scan_desk", ScanDesk)
