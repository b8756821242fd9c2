// A Flux agent's first calls in TypeScript, as a new user writes them: types from `openapi-typescript` (its default
// settings) on the served document, calls through `openapi-fetch`. It must type-check under `strict`; run with
// FLUX_DAO_URL and FLUX_DAO_KEY set, it prints one JSON line that tests/typescript/test_typescript_client.py checks.
import createClient from "openapi-fetch";

import type { components, paths } from "./schema.js";

type Problem = components["schemas"]["Problem"];

const baseUrl = process.env["FLUX_DAO_URL"];
const key = process.env["FLUX_DAO_KEY"];
if (!baseUrl || !key) {
  throw new Error("set FLUX_DAO_URL and FLUX_DAO_KEY");
}

const flux = createClient<paths>({ baseUrl, headers: { "X-Flux-Service-Key": key } });

function must<T>(data: T | undefined, error: unknown, what: string): T {
  if (data === undefined) {
    throw new Error(`${what} failed: ${JSON.stringify(error)}`);
  }
  return data;
}

// only `email` is required: `onboarded` has a default, the JSON fields are optional
const created = await flux.POST("/api/v1/users", { body: { email: "ada@example.com" } });
const ada = must(created.data, created.error, "create user");

const profile: components["schemas"]["JsonObject"] = { timezone: "Europe/Paris" };
const updated = await flux.PATCH("/api/v1/users/{user_id}", {
  params: { path: { user_id: ada.id } },
  body: { profile },
});
const withProfile = must(updated.data, updated.error, "update user");

const goalCall = await flux.POST("/api/v1/goals", { body: { user_id: ada.id, title: "Run a marathon" } });
const goal = must(goalCall.data, goalCall.error, "create goal");

const taskCall = await flux.POST("/api/v1/tasks", {
  body: { user_id: ada.id, goal_id: goal.id, title: "Long run", scheduled_at: "2030-01-01T07:00:00Z" },
});
const task = must(taskCall.data, taskCall.error, "create task");

const listCall = await flux.GET("/api/v1/tasks", {
  params: { query: { user_id: ada.id, status: "pending" } },
});
const pending = must(listCall.data, listCall.error, "list tasks");

// a week's pending or missed tasks, latest first, two a page along `next_cursor`, each with its goal embedded
type TaskCreate = components["schemas"]["TaskCreate"];
type TasksQuery = NonNullable<paths["/api/v1/tasks"]["get"]["parameters"]["query"]>;

const linCall = await flux.POST("/api/v1/users", { body: { email: "lin@example.com" } });
const lin = must(linCall.data, linCall.error, "create lin");
const celloCall = await flux.POST("/api/v1/goals", { body: { user_id: lin.id, title: "Learn the cello" } });
const cello = must(celloCall.data, celloCall.error, "create cello goal");
const plan: TaskCreate[] = [
  { user_id: lin.id, goal_id: cello.id, title: "Scales", scheduled_at: "2031-03-03T00:00:00Z", status: "pending" },
  { user_id: lin.id, goal_id: cello.id, title: "Bow drill", scheduled_at: "2031-03-04T02:00:00Z", status: "missed" },
  { user_id: lin.id, goal_id: cello.id, title: "Bach suite", scheduled_at: "2031-03-04T02:00:00Z", status: "pending" },
  { user_id: lin.id, title: "Etude", scheduled_at: "2031-03-05T02:00:00Z", status: "missed" },
  { user_id: lin.id, goal_id: cello.id, title: "Lesson", scheduled_at: "2031-03-06T02:00:00Z", status: "done" },
  { user_id: lin.id, goal_id: cello.id, title: "Practice", scheduled_at: "2031-03-07T02:00:00Z", status: "pending" },
  { user_id: lin.id, goal_id: cello.id, title: "Recital", scheduled_at: "2031-03-10T00:00:00Z", status: "pending" },
  { user_id: lin.id, goal_id: cello.id, title: "Open strings", status: "pending" },
];
const made: components["schemas"]["Task"][] = [];
for (const body of plan) {
  const call = await flux.POST("/api/v1/tasks", { body });
  made.push(must(call.data, call.error, `create ${body.title}`));
}

const week: TasksQuery = {
  user_id: lin.id,
  status__in: ["pending", "missed"],
  scheduled_at__gte: "2031-03-03T00:00:00Z",
  scheduled_at__lt: "2031-03-10T00:00:00Z",
  sort: ["-scheduled_at", "title"],
  limit: 2,
  include: ["goal"],
};
const pages: { ids: string[]; goals: (string | null)[]; page: number | null; total: number | null }[] = [];
let cursor: string | null = null;
do {
  const query: TasksQuery = cursor === null ? week : { ...week, cursor };
  const call = await flux.GET("/api/v1/tasks", { params: { query } });
  const page = must(call.data, call.error, `tasks page ${pages.length + 1}`);
  pages.push({
    ids: page.items.map((t) => t.id),
    // the embedded goal, typed: `Goal | null` when asked (null: the task has none), absent when not
    goals: page.items.map((t) => (t.goal === undefined ? "(not embedded)" : t.goal === null ? null : t.goal.title)),
    page: page.page,
    total: page.total,
  });
  cursor = page.next_cursor;
} while (cursor !== null && pages.length < 5);

const missing = await flux.GET("/api/v1/users/{user_id}", {
  params: { path: { user_id: "00000000-0000-4000-8000-000000000000" } },
});
const notFound: Problem | undefined = missing.error;

const invalid = await flux.POST("/api/v1/tasks", { body: { user_id: ada.id, title: "" } });
const rejected: Problem | undefined = invalid.error;

console.log(
  JSON.stringify({
    user: { email: ada.email, onboarded: ada.onboarded, profile: withProfile.profile },
    goal: { status: goal.status, target_weeks: goal.target_weeks },
    task: { status: task.status, goal_id: task.goal_id === goal.id },
    pending: { titles: pending.items.map((t) => t.title), total: pending.total },
    walk: {
      pages,
      made: made.map((t) => ({ id: t.id, title: t.title, status: t.status, scheduled_at: t.scheduled_at })),
    },
    not_found: { http: missing.response.status, type: notFound?.type, status: notFound?.status },
    invalid: {
      http: invalid.response.status,
      type: rejected?.type,
      fields: (rejected?.errors ?? []).map((e) => e.field),
    },
  }),
);
