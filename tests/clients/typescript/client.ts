/**
 * A frontend's view of the learner's journey, typed only by what openapi-typescript generates
 * from /schema/openapi.json. It is compiled (tsc --noEmit), never run: the test passes when the
 * document describes every request and answer used here, and a renamed or retyped field makes
 * tsc reject it. So every answer is typed by the generated types alone, never by hand.
 */
import type { components, paths } from "./generated/openapi";

type Schemas = components["schemas"];
type Method = "get" | "post" | "put" | "patch" | "delete";

// What the generated `paths` say about one operation: its parameters, body and answers.
type Operation<P extends keyof paths, M extends Method> = Extract<
  paths[P][M],
  { responses: unknown }
>;
type Json<T> = T extends { content: { "application/json": infer B } } ? B : undefined;
type Responses<O> = O extends { responses: infer R } ? R : never;
type Answer<O, S extends keyof Responses<O>> = Json<Responses<O>[S]>;
type RequestBody<O> = O extends { requestBody?: infer R } ? Json<NonNullable<R>> : never;
type PathParams<O> = O extends { parameters: { path: infer A } } ? A : never;
type Query<O> = O extends { parameters: { query?: infer Q } } ? NonNullable<Q> : never;

// An operation's path parameters and body are required exactly when the document says so.
type Options<O> = { token?: string } & ([PathParams<O>] extends [never]
  ? { path?: never }
  : { path: PathParams<O> }) &
  ([Query<O>] extends [never] ? { query?: never } : { query?: Query<O> }) &
  ([RequestBody<O>] extends [never] ? { body?: never } : { body: RequestBody<O> });

type ErrorBody = Answer<Operation<"/auth/register", "post">, 409>;

export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly body: ErrorBody | undefined,
  ) {
    super(body ? `${body.status_code}: ${body.detail}` : `HTTP ${status}`);
  }
}

export class LmsClient {
  constructor(private readonly baseUrl: string) {}

  async call<
    P extends keyof paths,
    M extends Method,
    S extends keyof Responses<Operation<P, M>> & number,
  >(
    method: M,
    path: P,
    expected: S,
    options: Options<Operation<P, M>>,
  ): Promise<Answer<Operation<P, M>, S>> {
    const { token, path: params, query, body } = options as {
      token?: string;
      path?: Record<string, string>;
      query?: Record<string, string | number | null | undefined>;
      body?: unknown;
    };
    const url = new URL(
      path.replace(/\{(\w+)\}/g, (_, name: string) => encodeURIComponent(params?.[name] ?? "")),
      this.baseUrl,
    );
    for (const [name, value] of Object.entries(query ?? {})) {
      if (value !== null && value !== undefined) url.searchParams.set(name, String(value));
    }
    const headers: Record<string, string> = { Accept: "application/json" };
    if (token) headers.Authorization = `Bearer ${token}`;
    if (body !== undefined) headers["Content-Type"] = "application/json";
    const response = await fetch(url, {
      method: method.toUpperCase(),
      headers,
      body: body === undefined ? null : JSON.stringify(body),
    });
    if (response.status !== expected) {
      const detail = response.headers.get("content-type")?.includes("json")
        ? ((await response.json()) as ErrorBody)
        : undefined;
      throw new ApiError(response.status, detail);
    }
    const answer: unknown = response.status === 204 ? undefined : await response.json();
    return answer as Answer<Operation<P, M>, S>;
  }
}

export interface JourneyReport {
  userId: string;
  role: string;
  sessionExpiresAt: number;
  catalog: string[];
  enrollmentId?: string;
  certificateUrl?: string;
  certificateValid?: boolean;
}

/** Sign up, browse the catalog, take the first course to its certificate and verify it. */
export async function learnerJourney(
  api: LmsClient,
  email: string,
  readMailedCode: (email: string) => Promise<string>,
): Promise<JourneyReport> {
  const registered: Schemas["RegisterResponse"] = await api.call("post", "/auth/register", 201, {
    body: { email },
  });
  const verified = await api.call("post", "/auth/verify-email", 200, {
    body: { email: registered.email, otp: await readMailedCode(registered.email) },
  });
  if (verified.next !== "complete-profile") throw new Error(`unexpected step ${verified.next}`);

  const profile: Schemas["CompleteProfileRequest"] = {
    username: "ada_lovelace",
    password: "plum-orbit-cascade-91",
    fullName: "Ada Lovelace",
    country: "UK",
    state: "London",
    zip: "NW1",
  };
  const tokens: Schemas["Tokens"] = await api.call("post", "/auth/complete-profile", 200, {
    token: verified.profileToken,
    body: profile,
  });
  const token: string = tokens.accessToken;
  const sessionExpiresAt: number = Date.now() + tokens.expiresIn * 1000;
  const me: Schemas["User"] = await api.call("get", "/auth/me", 200, { token });
  const report: JourneyReport = { userId: me.id, role: me.role, sessionExpiresAt, catalog: [] };

  // Every page of the catalog, following nextCursor.
  let cursor: string | null | undefined;
  const courses: Schemas["CourseSummary"][] = [];
  do {
    const page: Schemas["CourseSummaryPage"] = await api.call(
      "get",
      "/courses",
      200,
      { token, query: { limit: 20, cursor } },
    );
    courses.push(...page.items);
    for (const course of page.items) {
      const byline = `${course.title} by ${course.creator.name ?? "a creator"}`;
      report.catalog.push(`${byline}: ${course.lessonCount} lesson(s) at ${course.price}`);
    }
    cursor = page.nextCursor;
  } while (cursor);
  const course = courses[0];
  if (course === undefined) return report;

  const enrollment: Schemas["Enrollment"] = await api.call(
    "post",
    "/courses/{course_id}/enroll",
    201,
    { token, path: { course_id: course.id } },
  );
  report.enrollmentId = enrollment.id;
  const lessons: Schemas["Lesson"][] = await api.call(
    "get",
    "/courses/{course_id}/lessons",
    200,
    { token, path: { course_id: enrollment.courseId } },
  );

  let completion: Schemas["LessonCompletion"] | undefined;
  for (const lesson of lessons) {
    const heartbeat: Schemas["Heartbeat"] = { positionSeconds: 0 };
    // A 204: the document gives it no body, so the answer is typed undefined.
    const nothing: undefined = await api.call("post", "/lessons/{lesson_id}/progress", 204, {
      token,
      path: { lesson_id: lesson.id },
      body: heartbeat,
    });
    void nothing;
    completion = await api.call("post", "/lessons/{lesson_id}/complete", 200, {
      token,
      path: { lesson_id: lesson.id },
    });
  }

  const verifyUrl: string | undefined = completion?.certificate?.verifyUrl;
  const serial: string | undefined = completion?.certificate?.serialHash;
  if (verifyUrl !== undefined && serial !== undefined) {
    const verification: Schemas["Verification"] = await api.call(
      "get",
      "/certificates/verify/{serial_hash}",
      200,
      { path: { serial_hash: serial } },
    );
    const status: "VALID" | "REVOKED" = verification.certificate.status;
    report.certificateUrl = verifyUrl;
    report.certificateValid = verification.valid && status === "VALID";
  }
  return report;
}
