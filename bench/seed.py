"""Seed a catalog-sized dataset (creators, published courses, lessons) and its learners
(enrollments and lesson progress) fast, with COPY."""

from __future__ import annotations

import argparse
import asyncio
import bisect
import itertools
import os
import random
import string
import sys
import time
import uuid
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import TextIO, TypeVar

import asyncpg

# Bench users are recognised by this domain, so --truncate deletes them and nobody else.
BENCH_EMAIL_DOMAIN = "bench.lms.test"
# Every creator shares this password (and one argon2 hash of it: hashing 1,000 times would take
# minutes and prove nothing about the catalog).
BENCH_PASSWORD = "correct horse battery staple bench"  # noqa: S105 - a fixture, not a secret
BATCH_ROWS = 10_000
PUBLISHED_SPAN = timedelta(days=730)
# Course popularity for enrollments: weight 1/rank**0.75 over the published courses in a random
# order, so at 100,000 courses the most popular one has about 3% of the enrollments, the hundredth
# about 0.1%, and the median course a handful.
COURSE_POPULARITY_EXPONENT = 0.75
# Enrollments without a single progress row (enrolled, never pressed play), per enrollment with.
UNSTARTED_SHARE = 0.1
ENROLLMENT_CHUNK = 3_000  # enrollments per COPY batch (their ~10,000 progress rows follow)
UNKNOWN_DURATION = 600.0  # seconds assumed for a lesson whose length is not known


def words(text: str) -> tuple[str, ...]:
    """Whitespace-separated words, in order, each once (long word lists read better as text)."""
    return tuple(dict.fromkeys(text.split()))


# Topic words, most popular first. A course draws its words from this list with Zipf-like
# weights, so the first few appear in a large share of the catalog and the last ones in well
# under one percent: search terms then hit realistic fractions of the table. Each is its own
# English stem (no two collapse into one lexeme) and none is a stop word.
VOCABULARY: tuple[str, ...] = words(
    """
    python design marketing javascript photography excel leadership finance drawing data react
    business guitar writing cooking yoga investing sql productivity spanish java docker statistics
    painting piano fitness accounting negotiation kubernetes linux machine aws communication
    branding typescript nutrition mindfulness french economics psychology algebra calculus
    sketching singing watercolor baking gardening blender unity figma django pandas spreadsheets
    powerpoint copywriting seo entrepreneurship management sales storytelling git networking
    cybersecurity cloud azure devops terraform ansible golang rust kotlin swift android flutter vue
    angular nodejs graphql api microservices tensorflow pytorch numpy keras analytics visualization
    tableau powerbi probability geometry physics chemistry biology genetics astronomy ecology
    geology anatomy neuroscience pharmacology german italian japanese mandarin korean arabic
    portuguese russian grammar pronunciation filmmaking cinematography animation illustration
    calligraphy ceramics pottery knitting sewing woodworking meditation pilates running cycling
    swimming boxing chess drums violin jazz composition harmony podcasting journalism screenwriting
    poetry history philosophy sociology ethics architecture interior urbanism sustainability
    agriculture nursing parenting budgeting taxes law contracts trading stocks cryptocurrency
    blockchain ethereum solidity robotics arduino electronics embedded quantum compilers algorithms
    databases postgresql mongodb redis kafka spark hadoop airflow dbt snowflake bigquery serverless
    lambda fastapi flask laravel php ruby rails elixir haskell scala clojure erlang fortran cobol
    assembly webassembly svelte nextjs tailwind bootstrap sass webpack vite jest cypress selenium
    playwright accessibility typography ux ui wireframing prototyping usability inkscape photoshop
    lightroom premiere motion davinci logic ableton mixing mastering synthesis orchestration
    counterpoint ukulele cello saxophone trumpet flute harp banjo surfing climbing hiking sailing
    skiing archery fencing judo karate taekwondo bodybuilding stretching mobility rehabilitation
    physiotherapy dentistry radiology epidemiology immunology virology botany zoology entomology
    ornithology mycology paleontology archaeology anthropology linguistics semantics logic rhetoric
    debate persuasion diplomacy geopolitics macroeconomics microeconomics econometrics actuarial
    insurance banking payments fintech ecommerce shopify dropshipping amazon etsy wordpress
    squarespace webflow nocode zapier notion obsidian evernote trello jira scrum agile kanban lean
    quality kaizen logistics procurement warehousing forecasting inventory recruiting onboarding
    coaching mentoring facilitation mediation counseling hypnotherapy astrology tarot perfumery
    winemaking brewing mixology barista patisserie chocolate sushi fermentation vegan
    """
)

LEVELS = ("Beginner", "Intermediate", "Advanced", "Complete", "Practical", "Modern", "Essential")
TITLE_TEMPLATES = (
    "Introduction to {A}",
    "{A} for Beginners",
    "{L} {A}",
    "{L} {A} and {B}",
    "Mastering {A}",
    "{A} Fundamentals",
    "The {A} Bootcamp",
    "{A} with {B}: Hands-on Projects",
    "{A} Masterclass",
    "Applied {A} for {B}",
    "{A} in Practice",
    "From Zero to {A}",
    "{A} and {B} Essentials",
    "{L} Guide to {A}",
)
SENTENCES = (
    "Learn {a} step by step, from first principles to confident everyday use.",
    "You will work with {a}, {b} and {c} on exercises drawn from real teams.",
    "Each module ends with a short project that puts {a} to work.",
    "We compare {a} with {b} so you know when each one fits.",
    "Ideal for students who already know some {a} and want to go further with {b}.",
    "Includes quizzes, downloadable notes and a final capstone combining {a} and {b}.",
    "The instructor has taught {a} for years and shares the mistakes that cost the most time.",
    "By the end you will be able to plan, build and review work in {a}.",
    "No prior experience with {a} is required; curiosity is enough.",
    "Case studies cover {a}, {b} and how they meet {c} in practice.",
)
LESSON_TITLES = (
    "Welcome and overview",
    "Setting up your tools",
    "Core ideas of {a}",
    "Working with {a}",
    "A first project in {a}",
    "Common mistakes with {a}",
    "{a} and {b} together",
    "Going further with {a}",
    "Review and next steps",
)
FIRST_NAMES = words(
    "Ada Alan Amara Ana Arjun Beatriz Carlos Chen Chloe Dmitri Elena Emeka Farah Grace Hana Hugo "
    "Ines Ivan Jamal Jin Julia Kofi Lara Leila Liam Lucia Mateo Maya Mei Nadia Noah Omar Priya "
    "Rafael Rosa Sami Sara Sofia Tariq Tomas Una Valentina Wei Yara Yusuf Zara Zoe"
)
LAST_NAMES = words(
    "Abebe Alvarez Bauer Bianchi Chen Costa Dubois Ellis Fischer Garcia Gupta Haddad Hansen Ito "
    "Jensen Kim Kowalski Larsen Lopez Martin Mensah Moreau Nakamura Nguyen Novak Okafor Olsen "
    "Park Patel Perez Petrov Quinn Rahman Rossi Santos Schmidt Silva Singh Sousa Tanaka Torres "
    "Varga Wagner Walker Wang Weber Yilmaz Young Zhang"
)
STATES = ("CA", "NY", "TX", "WA", "IL", "MA", "CO", "OR", "FL", "GA")

USER_COLUMNS = (
    "id",
    "email",
    "name",
    "username",
    "password_hash",
    "full_name",
    "country",
    "state",
    "zip",
    "email_verified",
    "phone_verified",
    "is_profile_complete",
    "is_active",
    "role",
    "token_version",
    "created_at",
    "updated_at",
)
COURSE_COLUMNS = (
    "id",
    "title",
    "description",
    "thumbnail_url",
    "price",
    "status",
    "creator_id",
    "lesson_count",
    "created_at",
    "updated_at",
    "submitted_at",
    "published_at",
)
LESSON_COLUMNS = (
    "id",
    "course_id",
    "title",
    "description",
    "position",
    "video_version",
    "duration_seconds",
    "transcript_status",
    "created_at",
    "updated_at",
)
ENROLLMENT_COLUMNS = (
    "id",
    "user_id",
    "course_id",
    "progress",
    "completed",
    "enrolled_at",
    "completed_at",
)
PROGRESS_COLUMNS = (
    "id",
    "user_id",
    "lesson_id",
    "enrollment_id",
    "completed",
    "completed_at",
    "position_seconds",
    "watched_seconds",
    "watched",
    "last_heartbeat_at",
    "created_at",
    "updated_at",
)

T = TypeVar("T")
Row = tuple[object, ...]


def zipf_cumulative(n: int, exponent: float) -> list[float]:
    """Cumulative weights 1/rank**exponent for random.choices / bisect."""
    return list(itertools.accumulate(1.0 / (rank**exponent) for rank in range(1, n + 1)))


def batched(rows: Iterable[T], size: int) -> Iterator[list[T]]:
    """Lists of at most `size` items, pulled lazily so only one batch is ever in memory."""
    iterator = iter(rows)
    while batch := list(itertools.islice(iterator, size)):
        yield batch


class Progress:
    """A one-line progress bar on stderr: redrawn in place on a terminal, every 10% otherwise
    (so CI logs and redirected output stay short)."""

    def __init__(self, total: int, label: str, stream: TextIO = sys.stderr) -> None:
        self.total, self.label, self.stream = max(total, 1), label, stream
        self.done = 0
        self.started = time.monotonic()
        self.tty = stream.isatty()
        self._last_draw = 0.0
        self._last_decile = -1

    def extend(self, n: int) -> None:
        """Rows that turned out to be needed after the bar started (planned enrollments)."""
        self.total += n

    def advance(self, n: int) -> None:
        self.done += n
        now = time.monotonic()
        if self.tty:
            if now - self._last_draw >= 0.1 or self.done >= self.total:
                self._last_draw = now
                self.stream.write("\r" + self._line(now))
                self.stream.flush()
        else:
            decile = 10 * self.done // self.total
            if decile != self._last_decile:
                self._last_decile = decile
                self.stream.write(self._line(now) + "\n")
                self.stream.flush()

    def close(self) -> None:
        if self.tty:
            self.stream.write("\r" + self._line(time.monotonic()) + "\n")
            self.stream.flush()

    def _line(self, now: float) -> str:
        fraction = min(self.done / self.total, 1.0)
        width = 30
        filled = int(fraction * width)
        elapsed = max(now - self.started, 1e-9)
        rate = self.done / elapsed
        eta = (self.total - self.done) / rate if rate > 0 else 0.0
        bar = "#" * filled + "-" * (width - filled)
        return (
            f"{self.label} [{bar}] {fraction:6.1%} {self.done:>11,}/{self.total:,} rows"
            f"  {rate:>9,.0f} rows/s  ETA {eta:5.0f}s"
        )


class SeedError(Exception):
    """The options cannot be met (no courses to enroll in, too few learners): one line, exit 2."""


@dataclass(frozen=True, slots=True)
class SeedOptions:
    courses: int
    creators: int
    lessons: int
    seed: int
    run_tag: str
    truncate: bool
    learners: int = 0
    progress_rows: int = 0


@dataclass(slots=True)
class SeedResult:
    users: int = 0
    courses: int = 0
    lessons: int = 0
    learners: int = 0
    enrollments: int = 0
    progress_rows: int = 0
    seconds: float = 0.0
    # Courses whose title or description contains each vocabulary word: the search selectivity.
    word_courses: Counter[str] | None = None
    learning: LearningStats | None = None

    @property
    def rows(self) -> int:
        return (
            self.users
            + self.courses
            + self.lessons
            + self.learners
            + self.enrollments
            + self.progress_rows
        )


@dataclass(frozen=True, slots=True)
class CourseLessons:
    """A published course as enrollments need it: its lessons in order, with their lengths."""

    course_id: uuid.UUID
    published_at: datetime
    lesson_ids: tuple[uuid.UUID, ...]
    durations: tuple[float, ...]


@dataclass(frozen=True, slots=True)
class PlannedEnrollment:
    learner: int  # index into Generator.learner_ids
    course: int  # index into the course list
    started: int  # lessons with a progress row: a prefix of the course's lessons
    last_completed: bool  # whether the last started lesson is completed (else in progress)


@dataclass(slots=True)
class LearningStats:
    enrollments: int = 0
    unstarted: int = 0  # enrollments with no progress row
    courses_completed: int = 0
    rows_completed: int = 0
    rows_in_progress: int = 0
    rows_with_seeks: int = 0  # in-progress rows whose watched spans have a gap (a seek)
    courses_enrolled: int = 0
    top_course_enrollments: int = 0


class Generator:
    """Lazily generated rows. Content (titles, prices, times, who made what) comes from
    Random(seed); ids come from Random(seed, run tag) so a second run without --truncate adds
    new rows instead of colliding with the first one."""

    def __init__(self, options: SeedOptions, now: datetime) -> None:
        self.options = options
        self.rng = random.Random(options.seed)  # noqa: S311 - reproducible test data
        self.id_rng = random.Random(f"{options.seed}/{options.run_tag}")  # noqa: S311
        self.now = now
        self.word_weights = zipf_cumulative(len(VOCABULARY), 0.8)
        # Some creators are prolific, most publish a handful: a mild skew, like real catalogs.
        self.creator_weights = zipf_cumulative(options.creators, 0.5)
        self.creator_ids: list[uuid.UUID] = []
        self.learner_ids: list[uuid.UUID] = []
        self.learner_joined: list[datetime] = []
        self.word_courses: Counter[str] = Counter()
        # Learning rows draw from their own generator: adding learners leaves the catalog as it
        # was for the same --seed.
        self.learn_rng = random.Random(f"{options.seed}/learning")  # noqa: S311

    def new_id(self) -> uuid.UUID:
        return uuid.UUID(int=self.id_rng.getrandbits(128), version=4)

    def word(self) -> str:
        total = self.word_weights[-1]
        return VOCABULARY[bisect.bisect_left(self.word_weights, self.rng.random() * total)]

    def users(self, password_hash: str) -> Iterator[Row]:
        tag = self.options.run_tag
        for i in range(self.options.creators):
            user_id = self.new_id()
            self.creator_ids.append(user_id)
            first, last = self.rng.choice(FIRST_NAMES), self.rng.choice(LAST_NAMES)
            joined = self.now - PUBLISHED_SPAN - timedelta(days=self.rng.uniform(1, 365))
            yield (
                user_id,
                f"creator{i:06d}.{tag}@{BENCH_EMAIL_DOMAIN}",
                None,  # name: the catalog falls back to full_name
                f"bench_{tag}_{i:06d}",
                password_hash,
                f"{first} {last}",
                "US",
                self.rng.choice(STATES),
                f"{self.rng.randrange(10_000, 99_999)}",
                True,
                False,
                True,
                True,
                "CREATOR",
                0,
                joined,
                joined,
            )

    def courses(self) -> Iterator[Row]:
        """Courses oldest first, published_at strictly increasing (distinct) across the span."""
        n = self.options.courses
        span_us = int(PUBLISHED_SPAN / timedelta(microseconds=1))
        step_us = max(span_us // max(n, 1), 1)
        start = self.now - PUBLISHED_SPAN
        for i in range(n):
            published = start + timedelta(microseconds=i * step_us + self.rng.randrange(step_us))
            submitted = published - timedelta(hours=self.rng.uniform(1, 168))
            created = submitted - timedelta(days=self.rng.uniform(1, 60))
            title, description, used = self._texts()
            self.word_courses.update(used)
            course_id = self.new_id()
            yield (
                course_id,
                title,
                description,
                f"https://img.bench.lms.test/courses/{course_id}.jpg",
                self._price(),
                "PUBLISHED",
                self._creator(),
                self.options.lessons,
                created,
                published,
                submitted,
                published,
            )

    def lessons(self, courses: Sequence[Row]) -> Iterator[Row]:
        for course in courses:
            course_id, title, created = course[0], str(course[1]), course[8]
            if not isinstance(created, datetime):
                raise RuntimeError("courses() yields created_at as a datetime")
            topic = self._topic_of(title)
            for position in range(1, self.options.lessons + 1):
                template = LESSON_TITLES[(position - 1) % len(LESSON_TITLES)]
                at = created + timedelta(minutes=10 * position)
                yield (
                    self.new_id(),
                    course_id,
                    template.format(a=topic, b=self.word()),
                    "",
                    position,
                    0,
                    round(self.rng.uniform(120, 3600), 1),
                    "NONE",
                    at,
                    at,
                )

    def learners(self, password_hash: str) -> Iterator[Row]:
        """Verified, profile-complete LEARNERs who joined over the past three years."""
        tag, rng = self.options.run_tag, self.learn_rng
        for i in range(self.options.learners):
            user_id = self.new_id()
            first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
            joined = self.now - timedelta(days=rng.uniform(1, 3 * 365))
            self.learner_ids.append(user_id)
            self.learner_joined.append(joined)
            yield (
                user_id,
                f"learner{i:06d}.{tag}@{BENCH_EMAIL_DOMAIN}",
                None,
                f"bench_{tag}_l{i:06d}",
                password_hash,
                f"{first} {last}",
                "US",
                rng.choice(STATES),
                f"{rng.randrange(10_000, 99_999)}",
                True,
                False,
                True,
                True,
                "LEARNER",
                0,
                joined,
                joined,
            )

    def plan_enrollments(
        self, courses: Sequence[CourseLessons], stats: LearningStats
    ) -> list[PlannedEnrollment]:
        """Who enrolls where and how far each got, until the progress rows add up to
        --progress-rows. Courses draw enrollments with Zipf-like popularity (in a random order,
        not by age); learners uniformly; a (learner, course) pair at most once."""
        target, rng = self.options.progress_rows, self.learn_rng
        n_learners = len(self.learner_ids)
        if target == 0 or n_learners == 0:
            return []
        if not courses:
            raise SeedError("no PUBLISHED course with lessons to enroll learners in")
        capacity = n_learners * sum(len(c.lesson_ids) for c in courses)
        if target > capacity // 2:
            raise SeedError(
                f"{target:,} progress rows need more learners or courses "
                f"({n_learners:,} learners x {len(courses):,} courses hold at most "
                f"{capacity:,}, and a realistic spread needs twice that)"
            )
        order = list(range(len(courses)))
        rng.shuffle(order)  # popularity rank -> course: independent of age and topic
        weights = zipf_cumulative(len(order), COURSE_POPULARITY_EXPONENT)
        total = weights[-1]
        taken: set[tuple[int, int]] = set()
        per_course: Counter[int] = Counter()
        plan: list[PlannedEnrollment] = []
        rows = 0
        while rows < target:
            course = order[bisect.bisect_left(weights, rng.random() * total)]
            for _ in range(20):  # a popular course may already have this learner: draw again
                learner = rng.randrange(n_learners)
                if (learner, course) not in taken:
                    break
            else:
                continue
            taken.add((learner, course))
            per_course[course] += 1
            n_lessons = len(courses[course].lesson_ids)
            if rng.random() < UNSTARTED_SHARE / (1 + UNSTARTED_SHARE):
                plan.append(PlannedEnrollment(learner, course, 0, False))
                stats.unstarted += 1
                continue
            # Many learners finish (or nearly finish) a course; the rest stop part-way.
            started = n_lessons if rng.random() < 0.3 else rng.randint(1, max(n_lessons - 1, 1))
            started = min(started, target - rows)
            # A full course is finished 60% of the time; elsewhere the last lesson reached is
            # usually still playing, sometimes finished with the next one not begun.
            last_completed = rng.random() < (0.6 if started == n_lessons else 0.3)
            plan.append(PlannedEnrollment(learner, course, started, last_completed))
            rows += started
        stats.courses_enrolled = len(per_course)
        stats.top_course_enrollments = max(per_course.values(), default=0)
        return plan

    def learning_rows(
        self,
        plan: Sequence[PlannedEnrollment],
        courses: Sequence[CourseLessons],
        stats: LearningStats,
    ) -> tuple[list[Row], list[Row]]:
        """(enrollment rows, their progress rows) for a chunk of the plan. Each row's numbers
        agree with what the API would have stored: progress is completed lessons over the
        course's lessons, the watched spans' measure is watched_seconds, times only increase."""
        rng = self.learn_rng
        enrollments: list[Row] = []
        progress: list[Row] = []
        for planned in plan:
            course = courses[planned.course]
            user_id = self.learner_ids[planned.learner]
            start = max(course.published_at, self.learner_joined[planned.learner])
            span = (self.now - start).total_seconds()
            enrolled_at = start + timedelta(seconds=span * rng.uniform(0.0, 0.9))
            enrollment_id = self.new_id()
            left = (self.now - enrolled_at).total_seconds()
            at = enrolled_at
            completed = 0
            last_completion: datetime | None = None
            for position in range(planned.started):
                duration = course.durations[position]
                # Lessons are watched in order, each some time after the previous one.
                at += timedelta(seconds=left / (planned.started + 1) * rng.uniform(0.3, 1.0))
                is_completed = position < planned.started - 1 or planned.last_completed
                progress.append(
                    self._progress_row(
                        user_id,
                        course.lesson_ids[position],
                        enrollment_id,
                        duration,
                        enrolled_at,
                        at,
                        is_completed,
                        stats,
                    )
                )
                if is_completed:
                    completed += 1
                    last_completion = at
            n_lessons = len(course.lesson_ids)
            done = completed == n_lessons
            stats.courses_completed += done
            enrollments.append(
                (
                    enrollment_id,
                    user_id,
                    course.course_id,
                    percent(completed, n_lessons),
                    done,
                    enrolled_at,
                    last_completion if done else None,
                )
            )
        stats.enrollments += len(enrollments)
        return enrollments, progress

    def _progress_row(
        self,
        user_id: uuid.UUID,
        lesson_id: uuid.UUID,
        enrollment_id: uuid.UUID,
        duration: float,
        enrolled_at: datetime,
        at: datetime,
        completed: bool,
        stats: LearningStats,
    ) -> Row:
        rng = self.learn_rng
        if completed:
            # Played from the start to at least the 95% that completes a lesson.
            end = Decimal(f"{duration * rng.uniform(0.95, 1.0):.3f}")
            spans = [asyncpg.Range(Decimal(0), end)]
            position = end
            stats.rows_completed += 1
        else:
            # Paused part-way (never at 95%, which would have completed it); a quarter skipped
            # a stretch by seeking, which the watched spans leave out.
            position = Decimal(f"{duration * rng.uniform(0.05, 0.9):.3f}")
            if rng.random() < 0.25:
                gap_from = (position * Decimal(rng.uniform(0.2, 0.6))).quantize(MILLI)
                gap_to = (
                    gap_from + (position - gap_from) * Decimal(rng.uniform(0.2, 0.6))
                ).quantize(MILLI)
                spans = [asyncpg.Range(Decimal(0), gap_from), asyncpg.Range(gap_to, position)]
                stats.rows_with_seeks += 1
            else:
                spans = [asyncpg.Range(Decimal(0), position)]
            stats.rows_in_progress += 1
        watched = sum((r.upper - r.lower for r in spans), Decimal(0))
        # The row appeared with the first heartbeat: after enrolling, before the last one.
        started_at = max(enrolled_at, at - timedelta(seconds=float(position) + rng.uniform(0, 600)))
        return (
            self.new_id(),
            user_id,
            lesson_id,
            enrollment_id,
            completed,
            at if completed else None,
            float(position),
            float(watched),
            spans,
            at,
            started_at,
            at,
        )

    def _texts(self) -> tuple[str, str, set[str]]:
        a, b = self.word(), self.word()
        while b == a:
            b = self.word()
        template = self.rng.choice(TITLE_TEMPLATES)
        title = template.format(A=a.capitalize(), B=b.capitalize(), L=self.rng.choice(LEVELS))
        used = {a, b} if "{B}" in template else {a}
        # A description keeps to its course's few topics (the title's words and up to two
        # more), as real ones do: about three topic words per course, which is what keeps the
        # rare words rare and the commonest one in about a fifth of the catalog.
        topics = [a, b, *(self.word() for _ in range(self.rng.randint(0, 2)))]
        sentences: list[str] = []
        for sentence in self.rng.sample(SENTENCES, self.rng.randint(2, 4)):
            fill = {k: a if k == "a" and not sentences else self.rng.choice(topics) for k in "abc"}
            sentences.append(sentence.format(**fill))
            used.update(w for k, w in fill.items() if "{" + k + "}" in sentence)
        return title, " ".join(sentences), used

    def _topic_of(self, title: str) -> str:
        for token in title.replace(":", " ").split():
            if token.lower() in _VOCABULARY_SET:
                return token
        return "the subject"

    def _price(self) -> Decimal:
        if self.rng.random() < 0.12:
            return Decimal("0.00")  # free courses are a real share of any catalog
        dollars = self.rng.choice((9, 14, 19, 24, 29, 39, 49, 59, 79, 99, 149, 199))
        return Decimal(f"{dollars}.99")

    def _creator(self) -> uuid.UUID:
        total = self.creator_weights[-1]
        index = bisect.bisect_left(self.creator_weights, self.rng.random() * total)
        return self.creator_ids[index]


_VOCABULARY_SET = frozenset(VOCABULARY)
MILLI = Decimal("0.001")
CENT = Decimal("0.01")


def percent(done: int, total: int) -> Decimal:
    """round(100 * done / total, 2), halves away from zero, as PostgreSQL rounds numerics."""
    return (Decimal(100 * done) / Decimal(max(total, 1))).quantize(CENT, rounding=ROUND_HALF_UP)


async def published_courses(conn: asyncpg.Connection) -> list[CourseLessons]:
    """Every PUBLISHED course with at least one lesson (this run's and any earlier ones)."""
    rows = await conn.fetch(
        """
        SELECT c.id, c.published_at,
               array_agg(l.id ORDER BY l.position) AS lesson_ids,
               array_agg(l.duration_seconds ORDER BY l.position) AS durations
        FROM courses c JOIN lessons l ON l.course_id = c.id
        WHERE c.status = 'PUBLISHED' AND c.published_at IS NOT NULL
        GROUP BY c.id
        ORDER BY c.published_at, c.id
        """
    )
    return [
        CourseLessons(
            r["id"],
            r["published_at"],
            tuple(r["lesson_ids"]),
            tuple(UNKNOWN_DURATION if d is None else float(d) for d in r["durations"]),
        )
        for r in rows
    ]


async def _hash_password() -> str:
    from lms.domain.auth.passwords import hash_password

    return await hash_password(BENCH_PASSWORD)


async def seed(database_url: str, options: SeedOptions) -> SeedResult:
    from lms.db.migrate import migrate_forward

    await migrate_forward(database_url, quiet=True)
    password_hash = await _hash_password()
    gen = Generator(options, datetime.now(UTC))
    result = SeedResult()
    conn = await asyncpg.connect(dsn=database_url)
    try:
        if options.truncate:
            # CASCADE also empties what hangs off courses (enrollments, certificates, jobs...):
            # they cannot outlive the courses they point at.
            await conn.execute("TRUNCATE courses, lessons CASCADE")
            deleted = await conn.execute(
                "DELETE FROM users WHERE email LIKE $1", f"%@{BENCH_EMAIL_DOMAIN}"
            )
            print(f"truncated courses and lessons; {deleted.split()[-1]} bench users deleted")
        total = options.creators + options.courses * (1 + options.lessons)
        total += options.learners + options.progress_rows
        progress = Progress(total, "seeding")
        started = time.perf_counter()
        # One transaction: an interrupted seed leaves nothing half-loaded behind.
        async with conn.transaction():
            for batch in batched(gen.users(password_hash), BATCH_ROWS):
                await conn.copy_records_to_table("users", records=batch, columns=USER_COLUMNS)
                result.users += len(batch)
                progress.advance(len(batch))
            for courses in batched(gen.courses(), BATCH_ROWS):
                await conn.copy_records_to_table("courses", records=courses, columns=COURSE_COLUMNS)
                result.courses += len(courses)
                progress.advance(len(courses))
                for lessons in batched(gen.lessons(courses), BATCH_ROWS):
                    await conn.copy_records_to_table(
                        "lessons", records=lessons, columns=LESSON_COLUMNS
                    )
                    result.lessons += len(lessons)
                    progress.advance(len(lessons))
            for learners in batched(gen.learners(password_hash), BATCH_ROWS):
                await conn.copy_records_to_table("users", records=learners, columns=USER_COLUMNS)
                result.learners += len(learners)
                progress.advance(len(learners))
            if options.progress_rows:
                await _seed_learning(conn, gen, result, progress)
        progress.close()
        # Fresh statistics, or the planner guesses at the new 100k rows until autovacuum runs;
        # and vacuumed now: else autovacuum's pass over a million new rows (and the first
        # readers' hint-bit writes) lands on whichever server is measured first.
        for table in ("users", "courses", "lessons", "enrollments", "lesson_progress"):
            await conn.execute(f"VACUUM (ANALYZE) {table}")
        result.seconds = time.perf_counter() - started
    finally:
        await conn.close()
    result.word_courses = gen.word_courses
    return result


async def _seed_learning(
    conn: asyncpg.Connection, gen: Generator, result: SeedResult, progress: Progress
) -> None:
    """Enrollments and their lesson progress, in the seed's transaction: a chunk of enrollments,
    then its progress rows (which reference them)."""
    stats = result.learning = LearningStats()
    courses = await published_courses(conn)
    plan = gen.plan_enrollments(courses, stats)
    progress.extend(len(plan))
    for chunk in batched(plan, ENROLLMENT_CHUNK):
        enrollments, rows = gen.learning_rows(chunk, courses, stats)
        await conn.copy_records_to_table(
            "enrollments", records=enrollments, columns=ENROLLMENT_COLUMNS
        )
        result.enrollments += len(enrollments)
        progress.advance(len(enrollments))
        for batch in batched(rows, BATCH_ROWS):
            await conn.copy_records_to_table(
                "lesson_progress", records=batch, columns=PROGRESS_COLUMNS
            )
            result.progress_rows += len(batch)
            progress.advance(len(batch))


def _run(coro: object) -> object:
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a project dependency on Linux and macOS
        return asyncio.run(coro)  # type: ignore[arg-type]
    return uvloop.run(coro)  # type: ignore[arg-type]


def _default_run_tag() -> str:
    """Short, unique per run (base-36 seconds since 2020 plus two random letters)."""
    seconds = int(time.time()) - 1_577_836_800
    alphabet = string.digits + string.ascii_lowercase
    digits = ""
    while seconds:
        seconds, rest = divmod(seconds, 36)
        digits = alphabet[rest] + digits
    return digits + "".join(random.choices(string.ascii_lowercase, k=2))  # noqa: S311


def _print_summary(result: SeedResult, courses: int) -> None:
    if result.word_courses and courses:
        ranked = result.word_courses.most_common()
        picks = [ranked[0], ranked[len(ranked) // 10], ranked[len(ranked) // 2], ranked[-1]]
        shares = ", ".join(f"{w!r} {n / courses:.1%}" for w, n in picks)
        print(f"search selectivity (courses containing the word): {shares}")
    stats = result.learning
    if stats and stats.enrollments:
        print(
            f"learning: {stats.enrollments:,} enrollments in {stats.courses_enrolled:,} courses "
            f"(the most popular has {stats.top_course_enrollments:,}), "
            f"{stats.courses_completed:,} completed, {stats.unstarted:,} never started; "
            f"{result.progress_rows:,} lesson progress rows: {stats.rows_completed:,} completed, "
            f"{stats.rows_in_progress:,} in progress ({stats.rows_with_seeks:,} with a seek)"
        )
    rate = result.rows / result.seconds if result.seconds else 0.0
    print(
        f"seeded {result.rows:,} rows ({result.users:,} creators, {result.courses:,} courses, "
        f"{result.lessons:,} lessons, {result.learners:,} learners, "
        f"{result.enrollments:,} enrollments, {result.progress_rows:,} progress rows) "
        f"in {result.seconds:.1f} s: {rate:,.0f} rows/s"
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bench.seed",
        description="Load creators, PUBLISHED courses and their lessons, then learners, their "
        "enrollments and lesson progress, with COPY. The database "
        "is --database-url, else DATABASE_URL, else the embedded PostgreSQL under LMS_DATA_DIR "
        "(the one `make run` uses); pending migrations are applied first.",
    )
    parser.add_argument("--courses", type=int, required=True, help="published courses to add")
    parser.add_argument("--creators", type=int, default=1000, help="creators (default 1000)")
    parser.add_argument("--lessons", type=int, default=5, help="lessons per course (default 5)")
    parser.add_argument(
        "--learners", type=int, default=20_000, help="LEARNER accounts (default 20000)"
    )
    parser.add_argument(
        "--progress-rows",
        type=int,
        default=None,
        help="lesson progress rows, with the enrollments they belong to (default 1000000, "
        "0 with --learners 0)",
    )
    parser.add_argument("--seed", type=int, default=1, help="random seed for the content")
    parser.add_argument(
        "--database-url", default=None, help="postgresql://... (default: see above)"
    )
    parser.add_argument(
        "--truncate",
        action="store_true",
        help="first empty courses and lessons (and what references them) and delete the bench "
        f"users (@{BENCH_EMAIL_DOMAIN})",
    )
    parser.add_argument(
        "--run-tag", default=None, help="tag in ids, emails and usernames (default: unique per run)"
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.courses < 0 or args.creators < 1 or args.lessons < 0:
        print("seed: error: need --courses >= 0, --creators >= 1, --lessons >= 0", file=sys.stderr)
        return 2
    if args.progress_rows is None:
        args.progress_rows = 1_000_000 if args.learners else 0
    if args.learners < 0 or args.progress_rows < 0:
        print("seed: error: need --learners >= 0 and --progress-rows >= 0", file=sys.stderr)
        return 2
    if args.progress_rows and not args.learners:
        print("seed: error: --progress-rows needs --learners >= 1", file=sys.stderr)
        return 2
    options = SeedOptions(
        courses=args.courses,
        creators=args.creators,
        lessons=args.lessons,
        seed=args.seed,
        run_tag=(args.run_tag or _default_run_tag()).lower(),
        truncate=args.truncate,
        learners=args.learners,
        progress_rows=args.progress_rows,
    )
    from lms.errors import StartupError

    embedded = None
    try:
        url = args.database_url or os.environ.get("DATABASE_URL") or None
        if url is None:
            from lms.embedded import EmbeddedServices
            from lms.settings import load_settings

            embedded = EmbeddedServices(Path(load_settings().data_dir), nats=False)
            url = embedded.acquire().database_url
            if url is None:
                raise RuntimeError("embedded PostgreSQL was asked for, so acquire() gives its URL")
        result = _run(seed(url, options))
        if not isinstance(result, SeedResult):
            raise RuntimeError("seed() returns a SeedResult")
    except (StartupError, SeedError) as exc:
        print(f"seed: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\nseed: interrupted; the transaction was rolled back", file=sys.stderr)
        return 130
    finally:
        if embedded is not None:
            embedded.release()
    _print_summary(result, options.courses)
    return 0


if __name__ == "__main__":
    sys.exit(main())
