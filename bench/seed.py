"""Seed a catalog-sized dataset (creators, published courses, lessons) fast, with COPY."""

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
from decimal import Decimal
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
    "id", "email", "name", "username", "password_hash", "full_name", "country", "state", "zip",
    "email_verified", "phone_verified", "is_profile_complete", "is_active", "role",
    "token_version", "created_at", "updated_at",
)  # fmt: skip
COURSE_COLUMNS = (
    "id", "title", "description", "thumbnail_url", "price", "status", "creator_id",
    "lesson_count", "created_at", "updated_at", "submitted_at", "published_at",
)  # fmt: skip
LESSON_COLUMNS = (
    "id", "course_id", "title", "description", "position", "video_version", "duration_seconds",
    "transcript_status", "created_at", "updated_at",
)  # fmt: skip

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


@dataclass(frozen=True, slots=True)
class SeedOptions:
    courses: int
    creators: int
    lessons: int
    seed: int
    run_tag: str
    truncate: bool


@dataclass(slots=True)
class SeedResult:
    users: int = 0
    courses: int = 0
    lessons: int = 0
    seconds: float = 0.0
    # Courses whose title or description contains each vocabulary word: the search selectivity.
    word_courses: Counter[str] | None = None

    @property
    def rows(self) -> int:
        return self.users + self.courses + self.lessons


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
        self.word_courses: Counter[str] = Counter()

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
            assert isinstance(created, datetime)
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
        progress.close()
        # Fresh statistics, or the planner guesses at the new 100k rows until autovacuum runs.
        await conn.execute("ANALYZE users; ANALYZE courses; ANALYZE lessons")
        result.seconds = time.perf_counter() - started
    finally:
        await conn.close()
    result.word_courses = gen.word_courses
    return result


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
    rate = result.rows / result.seconds if result.seconds else 0.0
    print(
        f"seeded {result.rows:,} rows ({result.users:,} creators, {result.courses:,} courses, "
        f"{result.lessons:,} lessons) in {result.seconds:.1f} s: {rate:,.0f} rows/s"
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bench.seed",
        description="Load creators, PUBLISHED courses and their lessons with COPY. The database "
        "is --database-url, else DATABASE_URL, else the embedded PostgreSQL under LMS_DATA_DIR "
        "(the one `make run` uses); pending migrations are applied first.",
    )
    parser.add_argument("--courses", type=int, required=True, help="published courses to add")
    parser.add_argument("--creators", type=int, default=1000, help="creators (default 1000)")
    parser.add_argument("--lessons", type=int, default=5, help="lessons per course (default 5)")
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
    options = SeedOptions(
        courses=args.courses,
        creators=args.creators,
        lessons=args.lessons,
        seed=args.seed,
        run_tag=(args.run_tag or _default_run_tag()).lower(),
        truncate=args.truncate,
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
            assert url is not None
        result = _run(seed(url, options))
        assert isinstance(result, SeedResult)
    except StartupError as exc:
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
