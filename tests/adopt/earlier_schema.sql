-- The earlier Flux service's PostgreSQL schema, rebuilt from /work/shared/notes/earlier_service.md §2 (our own words,
-- no original code) so `flux-dao adopt` can be tested against a database shaped like the one that service left behind:
-- Supabase-style migrations, text + CHECK instead of enum types, PostgreSQL's default constraint names, idx_<table>_<cols>
-- indexes, RLS owner policies on auth.uid(), a BEFORE UPDATE trigger on patterns and two materialized views.
-- It runs as one multi-statement string (asyncpg's conn.execute(sql)) on an empty database.

-- Supabase provides the auth schema and auth.uid(); a bare PostgreSQL needs a stand-in that reads the JWT subject.
CREATE SCHEMA IF NOT EXISTS auth;

CREATE OR REPLACE FUNCTION auth.uid() RETURNS uuid
LANGUAGE sql STABLE
AS $$ SELECT nullif(current_setting('request.jwt.claim.sub', true), '')::uuid $$;

-- users ---------------------------------------------------------------------------------------------------------------
CREATE TABLE users (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    email text NOT NULL UNIQUE,
    created_at timestamptz DEFAULT now(),
    onboarded boolean DEFAULT false,
    profile jsonb,
    notification_preferences jsonb
);

-- goals ---------------------------------------------------------------------------------------------------------------
CREATE TABLE goals (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    title text NOT NULL,
    description text,
    class_tags text[],
    status text DEFAULT 'active' CHECK (status IN ('active', 'completed', 'abandoned', 'pipeline')),
    parent_goal_id uuid REFERENCES goals (id),
    pipeline_order integer,
    activated_at timestamptz,
    completed_at timestamptz,
    target_weeks integer DEFAULT 6,
    plan_json jsonb,
    created_at timestamptz DEFAULT now()
);

CREATE INDEX idx_goals_user_id ON goals (user_id);
CREATE INDEX idx_goals_status ON goals (status);
CREATE INDEX idx_goals_parent_goal_id ON goals (parent_goal_id);
CREATE INDEX idx_goals_activated_at ON goals (activated_at);

-- tasks ---------------------------------------------------------------------------------------------------------------
CREATE TABLE tasks (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    goal_id uuid REFERENCES goals (id) ON DELETE SET NULL,
    title text NOT NULL,
    description text,
    status text DEFAULT 'pending' CHECK (status IN ('pending', 'done', 'missed', 'rescheduled', 'cancelled')),
    scheduled_at timestamptz,
    duration_minutes integer,
    trigger_type text DEFAULT 'time' CHECK (trigger_type IN ('time', 'location')),
    location_trigger text,
    reminder_sent_at timestamptz,
    whatsapp_sent_at timestamptz,
    call_sent_at timestamptz,
    completed_at timestamptz,
    recurrence_rule text,
    shared_with_goal_ids uuid[],
    created_at timestamptz DEFAULT now()
);

CREATE INDEX idx_tasks_user_id ON tasks (user_id);
CREATE INDEX idx_tasks_goal_id ON tasks (goal_id);
CREATE INDEX idx_tasks_status ON tasks (status);
CREATE INDEX idx_tasks_scheduled_at ON tasks (scheduled_at);
CREATE INDEX idx_tasks_reminder_sent_at ON tasks (reminder_sent_at);
CREATE INDEX idx_tasks_whatsapp_sent_at ON tasks (whatsapp_sent_at);
CREATE INDEX idx_tasks_user_scheduled_status ON tasks (user_id, scheduled_at, status);

-- conversations (user_id has no ON DELETE: the earlier ORM deleted them itself) ---------------------------------------
CREATE TABLE conversations (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id uuid NOT NULL REFERENCES users (id),
    langgraph_thread_id text NOT NULL UNIQUE,
    context_type text NOT NULL CHECK (context_type IN ('onboarding', 'goal', 'task', 'reschedule')),
    created_at timestamptz DEFAULT now(),
    last_message_at timestamptz
);

CREATE INDEX idx_conversations_last_message_at ON conversations (last_message_at);

-- patterns ------------------------------------------------------------------------------------------------------------
CREATE TABLE patterns (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    pattern_type text,
    description text,
    data jsonb,
    confidence float8,
    created_at timestamptz DEFAULT now(),
    updated_at timestamptz DEFAULT now()
);

CREATE INDEX idx_patterns_user_id ON patterns (user_id);
CREATE INDEX idx_patterns_pattern_type ON patterns (pattern_type);
CREATE INDEX idx_patterns_updated_at ON patterns (updated_at);

-- The database, not only the ORM, keeps patterns.updated_at current on every UPDATE.
CREATE OR REPLACE FUNCTION patterns_set_updated_at() RETURNS trigger
LANGUAGE plpgsql
AS $$
BEGIN
    NEW.updated_at = now();
    RETURN NEW;
END;
$$;

CREATE TRIGGER trg_patterns_updated_at
    BEFORE UPDATE ON patterns
    FOR EACH ROW EXECUTE FUNCTION patterns_set_updated_at();

-- notification_log (singular name, no created_at, task_id has no ON DELETE) -------------------------------------------
CREATE TABLE notification_log (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    task_id uuid NOT NULL REFERENCES tasks (id),
    channel text NOT NULL CHECK (channel IN ('push', 'whatsapp', 'call')),
    sent_at timestamptz,
    response text,
    responded_at timestamptz
);

CREATE INDEX idx_notification_log_task_id ON notification_log (task_id);
CREATE INDEX idx_notification_log_sent_at ON notification_log (sent_at);
CREATE INDEX idx_notification_log_response ON notification_log (response);

-- Row-level security: every row belongs to auth.uid(); the service connects as postgres, which bypasses it -------------
ALTER TABLE users ENABLE ROW LEVEL SECURITY;
ALTER TABLE goals ENABLE ROW LEVEL SECURITY;
ALTER TABLE tasks ENABLE ROW LEVEL SECURITY;
ALTER TABLE conversations ENABLE ROW LEVEL SECURITY;
ALTER TABLE patterns ENABLE ROW LEVEL SECURITY;
ALTER TABLE notification_log ENABLE ROW LEVEL SECURITY;

CREATE POLICY users_own ON users USING (id = auth.uid());
CREATE POLICY goals_own ON goals USING (user_id = auth.uid());
CREATE POLICY tasks_own ON tasks USING (user_id = auth.uid());
CREATE POLICY conversations_own ON conversations USING (user_id = auth.uid());
CREATE POLICY patterns_own ON patterns USING (user_id = auth.uid());
CREATE POLICY notification_log_own ON notification_log USING (
    EXISTS (SELECT 1 FROM tasks t WHERE t.id = notification_log.task_id AND t.user_id = auth.uid())
);

-- Analytics views (the API never read them; they depend on tasks.scheduled_at/status and goals.class_tags) -----------
CREATE MATERIALIZED VIEW user_weekly_stats AS
SELECT
    t.user_id,
    date_trunc('week', t.scheduled_at) AS week,
    count(*) FILTER (WHERE t.status = 'done') AS done_count,
    count(*) AS total_count,
    round(100.0 * count(*) FILTER (WHERE t.status = 'done') / count(*), 1) AS completion_pct
FROM tasks t
WHERE t.scheduled_at IS NOT NULL
GROUP BY t.user_id, date_trunc('week', t.scheduled_at);

CREATE UNIQUE INDEX idx_user_weekly_stats_user_week ON user_weekly_stats (user_id, week);

-- Grouped by the whole class_tags value (no unnest), so the view still builds if the column becomes jsonb.
CREATE MATERIALIZED VIEW missed_by_category AS
SELECT
    g.class_tags,
    count(*) AS missed_count
FROM tasks t
JOIN goals g ON g.id = t.goal_id
WHERE t.status = 'missed'
GROUP BY g.class_tags;
