"""A competition's board: its store, and the parts that keep it (teams, the ledger of limits,
submissions, final selections, rescoring), over one engine, one set of rules and one clock."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from competition.board.accounts import Accounts
from competition.board.context import BoardContext
from competition.board.ledger import Ledger
from competition.board.prepared import PreparedCompetition
from competition.board.rescoring import Rescoring
from competition.board.rules import Rules, utcnow
from competition.board.scorer_process import ChildScorer
from competition.board.selections import Selections
from competition.board.store import db, migrations
from competition.board.submissions import Submissions
from competition.board.team_forming import TeamForming
from competition.board.teams import Teams
from competition.tracking.config import TrackingConfig, load_config


class Board:
    def __init__(self, comp: PreparedCompetition, url: str | None = None,
                 now: Callable[[], datetime] = utcnow, scorer: ChildScorer | None = None,
                 tracking: TrackingConfig | None = None):
        """`scorer`: how files are scored (default: a forked child process; threaded servers
        pass ChildScorer("forkserver"))."""
        self.comp = comp
        self.rules = Rules.from_config(comp.rules, comp.task.direction)
        self.engine = db.make_engine(url or db.store_url(comp.root, comp.store_url))
        try:
            migrations.check(self.engine, comp.root)  # never changes the schema
        except BaseException:
            self.engine.dispose()
            raise
        self.ctx = BoardContext(comp, self.engine, self.rules, now)
        self.teams = Teams(self.ctx)
        self.accounts = Accounts(self.ctx, self.teams)
        self.team_forming = TeamForming(self.ctx, self.teams)
        self.ledger = Ledger(self.ctx)
        self.submissions = Submissions(self.ctx, self.teams, self.ledger,
                                       scorer or ChildScorer(), tracking or load_config())
        self.selections = Selections(self.ctx)
        self.rescoring = Rescoring(self.ctx, self.ledger, self.submissions)

    @property
    def private_visible(self) -> bool:
        """Private scores are shown to participants once the deadline has passed."""
        return self.ctx.private_visible


def migrate(comp: PreparedCompetition, url: str | None = None) -> tuple[str | None, str]:
    """Bring the competition's store (`url`, else its configured one) to the schema revision
    this code needs, creating it where it is new: (revision before, revision after)."""
    return migrations.upgrade(url or db.store_url(comp.root, comp.store_url))
