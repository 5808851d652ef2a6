-- Glific's PostgreSQL schema, for the tables glific_bq syncs and the tables they reference.
--
-- Written after glific/glific's priv/repo/structure.sql (commit d93aaee) and the migrations that
-- extend its enums; see /work/shared/reference/glific-postgres-schema.md. Same column names,
-- types, nullability, defaults, enums, foreign keys and unique indexes, and triggers that change
-- rows the way Glific's do. Deliberate differences, kept small:
--   * no extensions (pg_trgm, uuid-ossp): trigram indexes are left out, gen_random_uuid() is used;
--   * ids are bigserial (Glific: bigint with a <table>_id_seq sequence: the same thing);
--   * the triggers read the clock from glific_clock(): CURRENT_TIMESTAMP in UTC, as Glific's do,
--     unless the setting glific_bq.clock pins it (the sample data writes a past month with it);
--   * every tenant table has the indexes a sync needs: (organization_id, id) and
--     (organization_id, updated_at, id), and (organization_id, inserted_at, id) where the sync's
--     cursor is inserted_at (insert-only tables); and for the platform organization's
--     cross-organization tables (glific_bq.platform), stats (inserted_at, id) and trackers
--     (updated_at, id), which the tick's probes use (without them each tick scans stats).
--   * saas and trial_users are here for the platform dataset (glific_bq.platform), as Glific has them.
-- Tables Glific has but we neither sync nor reference (billings, triggers, oban_jobs…) are left out.

CREATE SCHEMA IF NOT EXISTS global;

CREATE TYPE contact_field_scope_enum AS ENUM ('contact', 'globals', 'wa_group');
CREATE TYPE contact_field_value_type_enum AS ENUM ('text', 'integer', 'number', 'boolean', 'date');
CREATE TYPE contact_provider_status_enum AS ENUM ('none', 'session', 'session_and_hsm', 'hsm');
CREATE TYPE contact_status_enum AS ENUM ('blocked', 'failed', 'invalid', 'processing', 'valid');
CREATE TYPE flow_type_enum AS ENUM ('message');
CREATE TYPE interactive_message_type_enum AS ENUM ('list', 'quick_reply', 'location_request_message');
CREATE TYPE message_flow_enum AS ENUM ('inbound', 'outbound');
CREATE TYPE message_status_enum AS ENUM (
    'sent', 'delivered', 'enqueued', 'error', 'read', 'received', 'contact_opt_out',
    'reached', 'seen', 'played', 'deleted');
CREATE TYPE message_type_enum AS ENUM (
    'audio', 'contact', 'document', 'hsm', 'image', 'location', 'list', 'quick_reply', 'text', 'video',
    'sticker', 'location_request_message', 'poll', 'whatsapp_form_response');
CREATE TYPE organization_status_enum AS ENUM (
    'inactive', 'approved', 'active', 'suspended', 'ready_to_delete', 'forced_suspension');
CREATE TYPE template_button_type_enum AS ENUM ('call_to_action', 'quick_reply', 'otp', 'whatsapp_form');
CREATE TYPE user_roles_enum AS ENUM ('none', 'staff', 'manager', 'admin', 'glific_admin');

-- ---------------------------------------------------------------------------------------------
-- global
-- ---------------------------------------------------------------------------------------------

CREATE TABLE global.providers (
    id bigserial PRIMARY KEY,
    name varchar(255) NOT NULL,
    inserted_at timestamp(0) NOT NULL,
    updated_at timestamp(0) NOT NULL,
    shortcode varchar(255),
    "group" varchar(255),
    is_required boolean DEFAULT false,
    keys jsonb DEFAULT '{}'::jsonb,
    secrets jsonb DEFAULT '{}'::jsonb,
    description text
);
CREATE UNIQUE INDEX providers_name_index ON global.providers (name);
CREATE UNIQUE INDEX providers_shortcode_index ON global.providers (shortcode);

CREATE TABLE global.languages (
    id bigserial PRIMARY KEY,
    label varchar(255) NOT NULL,
    label_locale varchar(255) NOT NULL,
    description text,
    locale varchar(255) NOT NULL,
    is_active boolean DEFAULT true,
    inserted_at timestamp(0) NOT NULL,
    updated_at timestamp(0) NOT NULL,
    localized boolean DEFAULT false
);
CREATE UNIQUE INDEX languages_label_locale_index ON global.languages (label, locale);

-- ---------------------------------------------------------------------------------------------
-- public
-- ---------------------------------------------------------------------------------------------

CREATE TABLE organizations (
    id bigserial PRIMARY KEY,
    name varchar(255) NOT NULL,
    shortcode varchar(255) NOT NULL,
    email varchar(255) NOT NULL,
    bsp_id bigint NOT NULL REFERENCES global.providers (id),
    default_language_id bigint NOT NULL REFERENCES global.languages (id) ON DELETE RESTRICT,
    active_language_ids integer[] DEFAULT ARRAY[]::integer[],
    contact_id integer,
    out_of_office jsonb,
    is_active boolean DEFAULT true,
    timezone varchar(255),
    inserted_at timestamp(0) NOT NULL,
    updated_at timestamp(0) NOT NULL,
    session_limit integer DEFAULT 60,
    organization_id bigint,
    signature_phrase bytea,
    last_communication_at timestamp(0),
    is_approved boolean DEFAULT false,
    fields jsonb DEFAULT '{}'::jsonb,
    status organization_status_enum DEFAULT 'inactive'::organization_status_enum,
    newcontact_flow_id bigint,
    is_suspended boolean DEFAULT false,
    suspended_until timestamp(0),
    regx_flow jsonb,
    optin_flow_id bigint,
    deleted_at timestamp(0),  -- soft delete (a 2026 migration; older databases lack the column)
    is_trial_org boolean DEFAULT false,  -- trial organizations (a 2025 migration)
    trial_expiration_date timestamp(0)
);
CREATE UNIQUE INDEX organizations_contact_id_index ON organizations (contact_id);
CREATE UNIQUE INDEX organizations_shortcode_index ON organizations (shortcode);

CREATE TABLE contacts (
    id bigserial PRIMARY KEY,
    name varchar(255),
    phone varchar(255) NOT NULL,
    bsp_status contact_provider_status_enum DEFAULT 'none'::contact_provider_status_enum NOT NULL,
    status contact_status_enum DEFAULT 'valid'::contact_status_enum NOT NULL,
    language_id bigint NOT NULL REFERENCES global.languages (id) ON DELETE RESTRICT,
    optin_time timestamp(0),
    optout_time timestamp(0),
    last_message_at timestamp(0),
    settings jsonb DEFAULT '{}'::jsonb,
    fields jsonb DEFAULT '{}'::jsonb,
    organization_id bigint NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    inserted_at timestamp NOT NULL,
    updated_at timestamp NOT NULL,
    last_communication_at timestamp(0),
    optin_method varchar(255),
    optin_status boolean DEFAULT false,
    optin_message_id varchar(255),
    is_org_read boolean DEFAULT true,
    is_org_replied boolean DEFAULT true,
    is_contact_replied boolean DEFAULT true,
    last_message_number integer DEFAULT 0,
    optout_method varchar(255),
    active_profile_id bigint
);
CREATE UNIQUE INDEX contacts_phone_organization_id_index ON contacts (phone, organization_id);
CREATE INDEX contacts_name_organization_id_index ON contacts (name, organization_id);
CREATE INDEX contacts_updated_at_index ON contacts (updated_at);
CREATE INDEX contacts_last_message_at_index ON contacts (last_message_at) WHERE last_message_at IS NOT NULL;

CREATE TABLE profiles (
    id bigserial PRIMARY KEY,
    name varchar(255),
    contact_id bigint NOT NULL REFERENCES contacts (id) ON DELETE CASCADE,
    language_id bigint NOT NULL REFERENCES global.languages (id) ON DELETE CASCADE,
    organization_id bigint NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    inserted_at timestamp(0) NOT NULL,
    updated_at timestamp(0) NOT NULL,
    fields jsonb,
    type varchar(255)
);
CREATE INDEX profiles_contact_id_index ON profiles (contact_id);
CREATE UNIQUE INDEX profiles_name_type_contact_id_organization_id_index ON profiles (name, type, contact_id, organization_id);
ALTER TABLE contacts ADD CONSTRAINT contacts_active_profile_id_fkey
    FOREIGN KEY (active_profile_id) REFERENCES profiles (id) ON DELETE SET NULL;

CREATE TABLE users (
    id bigserial PRIMARY KEY,
    phone varchar(255) NOT NULL,
    password_hash varchar(255),
    name varchar(255),
    roles user_roles_enum[] DEFAULT ARRAY['none'::user_roles_enum],
    contact_id bigint NOT NULL REFERENCES contacts (id) ON DELETE CASCADE,
    organization_id bigint NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    inserted_at timestamp(0) NOT NULL,
    updated_at timestamp(0) NOT NULL,
    is_restricted boolean DEFAULT false,
    last_login_at timestamp(0) DEFAULT NULL::timestamp,
    last_login_from varchar(255) DEFAULT NULL::varchar,
    language_id bigint REFERENCES global.languages (id) ON DELETE RESTRICT,
    upload_contacts boolean DEFAULT false,
    confirmed_at timestamp(0)
);
CREATE UNIQUE INDEX users_phone_organization_id_index ON users (phone, organization_id);
CREATE INDEX users_contact_id_index ON users (contact_id);

CREATE TABLE groups (
    id bigserial PRIMARY KEY,
    label varchar(255) NOT NULL,
    description text,
    is_restricted boolean DEFAULT false,
    organization_id bigint NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    inserted_at timestamp(0) NOT NULL,
    updated_at timestamp(0) NOT NULL,
    last_communication_at timestamp(0),
    last_message_number integer DEFAULT 0
);
CREATE UNIQUE INDEX groups_label_organization_id_index ON groups (label, organization_id);

CREATE TABLE tags (
    id bigserial PRIMARY KEY,
    label varchar(255) NOT NULL,
    shortcode varchar(255) NOT NULL,
    description text,
    is_active boolean DEFAULT true,
    is_reserved boolean DEFAULT false,
    ancestors bigint[],
    is_value boolean DEFAULT false,
    keywords varchar(255)[],
    color_code varchar(255) DEFAULT '#0C976D'::varchar,
    language_id bigint NOT NULL REFERENCES global.languages (id) ON DELETE RESTRICT,
    parent_id bigint REFERENCES tags (id) ON DELETE SET NULL,
    organization_id bigint NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    inserted_at timestamp(0) NOT NULL,
    updated_at timestamp(0) NOT NULL
);
CREATE UNIQUE INDEX tags_shortcode_language_id_organization_id_index ON tags (shortcode, language_id, organization_id);

CREATE TABLE flows (
    id bigserial PRIMARY KEY,
    name varchar(255) NOT NULL,
    uuid uuid NOT NULL,
    version_number varchar(255) DEFAULT '13.1.0'::varchar,
    flow_type flow_type_enum DEFAULT 'message'::flow_type_enum NOT NULL,
    ignore_keywords boolean DEFAULT false,
    keywords varchar(255)[] DEFAULT ARRAY[]::varchar[],
    organization_id bigint NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    inserted_at timestamp NOT NULL,
    updated_at timestamp NOT NULL,
    respond_other boolean DEFAULT false,
    respond_no_response boolean DEFAULT false,
    is_active boolean DEFAULT true,
    is_background boolean DEFAULT false,
    is_pinned boolean DEFAULT false,
    tag_id bigint REFERENCES tags (id)
);
CREATE UNIQUE INDEX flows_name_organization_id_index ON flows (name, organization_id);
CREATE UNIQUE INDEX flows_uuid_organization_id_index ON flows (uuid, organization_id);
ALTER TABLE organizations
    ADD CONSTRAINT organizations_newcontact_flow_id_fkey FOREIGN KEY (newcontact_flow_id) REFERENCES flows (id) ON DELETE SET NULL,
    ADD CONSTRAINT organizations_optin_flow_id_fkey FOREIGN KEY (optin_flow_id) REFERENCES flows (id) ON DELETE SET NULL;

CREATE TABLE flow_revisions (
    id bigserial PRIMARY KEY,
    definition jsonb,
    flow_id bigint NOT NULL REFERENCES flows (id) ON DELETE CASCADE,
    revision_number integer DEFAULT 0,
    status varchar(255) DEFAULT 'draft'::varchar,
    inserted_at timestamp NOT NULL,
    updated_at timestamp NOT NULL,
    version integer DEFAULT 0,
    organization_id bigint NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    user_id bigint REFERENCES users (id) ON DELETE SET NULL
);
CREATE INDEX flow_revisions_flow_id_index ON flow_revisions (flow_id);

CREATE TABLE messages_media (
    id bigserial PRIMARY KEY,
    url text NOT NULL,
    source_url text NOT NULL,
    thumbnail text,
    caption text,
    provider_media_id varchar(255),
    inserted_at timestamp(0) NOT NULL,
    updated_at timestamp(0) NOT NULL,
    gcs_url text,
    organization_id bigint NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    content_type varchar(255)
);

CREATE TABLE session_templates (
    id bigserial PRIMARY KEY,
    uuid uuid NOT NULL,
    label varchar(255) NOT NULL,
    body text,
    type message_type_enum,
    is_reserved boolean DEFAULT false,
    is_active boolean DEFAULT true,
    is_source boolean DEFAULT false,
    shortcode varchar(255),
    is_hsm boolean DEFAULT false,
    number_parameters integer,
    language_id bigint NOT NULL REFERENCES global.languages (id) ON DELETE RESTRICT,
    parent_id bigint REFERENCES session_templates (id) ON DELETE SET NULL,
    message_media_id bigint REFERENCES messages_media (id) ON DELETE CASCADE,
    organization_id bigint NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    inserted_at timestamp(0) NOT NULL,
    updated_at timestamp(0) NOT NULL,
    translations jsonb DEFAULT '{}'::jsonb,
    status varchar(255),
    category varchar(255),
    example text,
    has_buttons boolean DEFAULT false,
    button_type template_button_type_enum,
    buttons jsonb DEFAULT '[]'::jsonb,
    bsp_id varchar(255),
    reason varchar(255),
    tag_id bigint REFERENCES tags (id)
);
CREATE UNIQUE INDEX session_templates_uuid_index ON session_templates (uuid);
CREATE UNIQUE INDEX session_templates_label_language_id_organization_id_index ON session_templates (label, language_id, organization_id);
CREATE UNIQUE INDEX session_templates_shortcode_language_id_organization_id_index ON session_templates (shortcode, language_id, organization_id);

CREATE TABLE interactive_templates (
    id bigserial PRIMARY KEY,
    label varchar(255),
    type interactive_message_type_enum,
    interactive_content jsonb DEFAULT '[]'::jsonb,
    organization_id bigint REFERENCES organizations (id) ON DELETE CASCADE,
    inserted_at timestamp(0) NOT NULL,
    updated_at timestamp(0) NOT NULL,
    translations jsonb DEFAULT '{}'::jsonb,
    language_id bigint DEFAULT 1 NOT NULL REFERENCES global.languages (id) ON DELETE RESTRICT,
    send_with_title boolean DEFAULT true NOT NULL,
    tag_id bigint REFERENCES tags (id)
);
CREATE UNIQUE INDEX interactive_templates_label_language_id_organization_id_index ON interactive_templates (label, language_id, organization_id);
CREATE UNIQUE INDEX interactive_templates_label_type_organization_id_index ON interactive_templates (label, type, organization_id);

CREATE TABLE message_broadcasts (
    id bigserial PRIMARY KEY,
    flow_id bigint REFERENCES flows (id) ON DELETE CASCADE,
    group_id bigint NOT NULL REFERENCES groups (id) ON DELETE CASCADE,
    message_id bigint,
    user_id bigint REFERENCES users (id) ON DELETE SET NULL,
    organization_id bigint NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    started_at timestamp(0) DEFAULT NULL::timestamp,
    completed_at timestamp(0) DEFAULT NULL::timestamp,
    inserted_at timestamp(0) NOT NULL,
    updated_at timestamp(0) NOT NULL,
    type varchar(255),
    message_params jsonb,
    default_results jsonb
);

CREATE TABLE messages (
    id bigserial PRIMARY KEY,
    uuid uuid,
    body text,
    type message_type_enum,
    is_hsm boolean DEFAULT false,
    flow message_flow_enum,
    status message_status_enum DEFAULT 'enqueued'::message_status_enum NOT NULL,
    bsp_message_id text,
    bsp_status message_status_enum,
    errors jsonb,
    message_number bigint,
    sender_id bigint NOT NULL REFERENCES contacts (id) ON DELETE CASCADE,
    receiver_id bigint NOT NULL REFERENCES contacts (id) ON DELETE CASCADE,
    contact_id bigint NOT NULL REFERENCES contacts (id) ON DELETE CASCADE,
    user_id bigint REFERENCES users (id) ON DELETE SET NULL,
    media_id bigint REFERENCES messages_media (id) ON DELETE SET NULL,
    send_at timestamp(0),
    sent_at timestamp(0),
    organization_id bigint NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    inserted_at timestamp NOT NULL,
    updated_at timestamp NOT NULL,
    session_uuid uuid,
    flow_label varchar(255),
    flow_id bigint REFERENCES flows (id) ON DELETE SET NULL,
    group_id bigint REFERENCES groups (id) ON DELETE CASCADE,
    context_id text,
    context_message_id bigint REFERENCES messages (id) ON DELETE CASCADE,
    interactive_content jsonb DEFAULT '{}'::jsonb,
    group_message_id bigint REFERENCES messages (id) ON DELETE SET NULL,
    template_id bigint REFERENCES session_templates (id) ON DELETE SET NULL,
    interactive_template_id bigint REFERENCES interactive_templates (id) ON DELETE SET NULL,
    message_broadcast_id bigint REFERENCES message_broadcasts (id) ON DELETE SET NULL,
    profile_id bigint REFERENCES profiles (id) ON DELETE SET NULL
);
CREATE UNIQUE INDEX messages_bsp_message_id_organization_id_index ON messages (bsp_message_id, organization_id);
CREATE INDEX messages_contact_id_index ON messages (contact_id);
CREATE INDEX messages_sender_id_index ON messages (sender_id);
CREATE INDEX messages_receiver_id_index ON messages (receiver_id);
CREATE INDEX messages_flow_id_index ON messages (flow_id);
CREATE INDEX messages_media_id_index ON messages (media_id) WHERE media_id IS NOT NULL;
CREATE INDEX messages_context_message_id_index ON messages (context_message_id) WHERE context_message_id IS NOT NULL;
CREATE INDEX messages_group_message_id_index ON messages (group_message_id) WHERE group_message_id IS NOT NULL;
CREATE INDEX messages_inserted_at_index ON messages (inserted_at);
CREATE INDEX messages_updated_at_index ON messages (updated_at);
ALTER TABLE message_broadcasts ADD CONSTRAINT flow_broadcasts_message_id_fkey
    FOREIGN KEY (message_id) REFERENCES messages (id) ON DELETE SET NULL;

CREATE TABLE messages_tags (
    id bigserial PRIMARY KEY,
    message_id bigint NOT NULL REFERENCES messages (id) ON DELETE CASCADE,
    tag_id bigint NOT NULL REFERENCES tags (id) ON DELETE CASCADE,
    value varchar(255),
    organization_id bigint NOT NULL REFERENCES organizations (id) ON DELETE CASCADE
);
CREATE UNIQUE INDEX messages_tags_message_id_tag_id_index ON messages_tags (message_id, tag_id);

CREATE TABLE messages_conversations (
    id bigserial PRIMARY KEY,
    conversation_id text,
    deduction_type varchar(255),
    is_billable boolean DEFAULT false,
    message_id bigint REFERENCES messages (id) ON DELETE CASCADE,
    organization_id bigint NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    payload jsonb DEFAULT '{}'::jsonb,
    inserted_at timestamp(0) NOT NULL,
    updated_at timestamp(0) NOT NULL
);

CREATE TABLE message_broadcast_contacts (
    id bigserial PRIMARY KEY,
    message_broadcast_id bigint NOT NULL REFERENCES message_broadcasts (id) ON DELETE CASCADE,
    contact_id bigint NOT NULL REFERENCES contacts (id) ON DELETE CASCADE,
    status varchar(255),
    organization_id bigint NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    processed_at timestamp(0) DEFAULT NULL::timestamp,
    inserted_at timestamp(0) NOT NULL,
    updated_at timestamp(0) NOT NULL
);
CREATE UNIQUE INDEX flow_broadcast_contacts_contact_id_flow_broadcast_id_index ON message_broadcast_contacts (contact_id, message_broadcast_id);

CREATE TABLE flow_contexts (
    id bigserial PRIMARY KEY,
    node_uuid uuid,
    flow_uuid uuid NOT NULL,
    contact_id bigint NOT NULL REFERENCES contacts (id) ON DELETE CASCADE,
    flow_id bigint NOT NULL REFERENCES flows (id) ON DELETE CASCADE,
    results jsonb DEFAULT '{}'::jsonb,
    parent_id bigint REFERENCES flow_contexts (id) ON DELETE SET NULL,
    wakeup_at timestamp(0) DEFAULT NULL::timestamp,
    completed_at timestamp(0) DEFAULT NULL::timestamp,
    recent_inbound jsonb DEFAULT '[]'::jsonb,
    recent_outbound jsonb DEFAULT '[]'::jsonb,
    inserted_at timestamp(0) NOT NULL,
    updated_at timestamp(0) NOT NULL,
    status varchar(255) DEFAULT 'published'::varchar,
    organization_id bigint NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    is_background_flow boolean DEFAULT false,
    group_message_id bigint REFERENCES messages (id) ON DELETE SET NULL,
    message_broadcast_id bigint REFERENCES message_broadcasts (id) ON DELETE SET NULL,
    is_await_result boolean DEFAULT false,
    is_killed boolean DEFAULT false,
    profile_id bigint REFERENCES profiles (id) ON DELETE SET NULL,
    reason varchar(255)
);
CREATE INDEX flow_contexts_contact_id_index ON flow_contexts (contact_id);
CREATE INDEX flow_contexts_flow_id_contact_id_index ON flow_contexts (flow_id, contact_id);

CREATE TABLE flow_results (
    id bigserial PRIMARY KEY,
    results jsonb DEFAULT '{}'::jsonb,
    contact_id bigint NOT NULL REFERENCES contacts (id) ON DELETE CASCADE,
    flow_id bigint NOT NULL REFERENCES flows (id) ON DELETE CASCADE,
    flow_uuid uuid NOT NULL,
    flow_version integer DEFAULT 1 NOT NULL,
    organization_id bigint NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    inserted_at timestamp NOT NULL,
    updated_at timestamp NOT NULL,
    flow_context_id bigint,
    profile_id bigint REFERENCES profiles (id) ON DELETE SET NULL
);
CREATE UNIQUE INDEX flow_results_flow_context_id_index ON flow_results (flow_context_id);
CREATE INDEX flow_results_contact_id_organization_id_index ON flow_results (contact_id, organization_id);
CREATE INDEX flow_results_flow_id_index ON flow_results (flow_id);

CREATE TABLE flow_counts (
    id bigserial PRIMARY KEY,
    uuid uuid NOT NULL,
    destination_uuid uuid,
    flow_id bigint NOT NULL REFERENCES flows (id) ON DELETE CASCADE,
    flow_uuid uuid NOT NULL,
    type varchar(255),
    count integer DEFAULT 1,
    recent_messages jsonb[] DEFAULT ARRAY[]::jsonb[],
    inserted_at timestamp(0) NOT NULL,
    updated_at timestamp(0) NOT NULL,
    organization_id bigint NOT NULL REFERENCES organizations (id) ON DELETE CASCADE
);
CREATE UNIQUE INDEX flow_counts_uuid_flow_id_type_index ON flow_counts (uuid, flow_id, type);
CREATE INDEX flow_counts_flow_id_index ON flow_counts (flow_id);

CREATE TABLE flow_labels (
    id bigserial PRIMARY KEY,
    uuid uuid NOT NULL,
    name varchar(255),
    organization_id bigint NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    inserted_at timestamp(0) NOT NULL,
    updated_at timestamp(0) NOT NULL,
    type varchar(255)
);
CREATE UNIQUE INDEX flow_labels_name_organization_id_index ON flow_labels (name, organization_id);

CREATE TABLE contact_histories (
    id bigserial PRIMARY KEY,
    contact_id bigint NOT NULL REFERENCES contacts (id) ON DELETE CASCADE,
    event_type varchar(255),
    event_label text,
    event_meta jsonb DEFAULT '{}'::jsonb,
    event_datetime timestamp(0),
    organization_id bigint NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    inserted_at timestamp(0) NOT NULL,
    updated_at timestamp(0) NOT NULL,
    profile_id bigint REFERENCES profiles (id) ON DELETE SET NULL
);
CREATE INDEX contact_histories_contact_id_index ON contact_histories (contact_id);
CREATE INDEX contact_histories_profile_id_index ON contact_histories (profile_id) WHERE profile_id IS NOT NULL;

CREATE TABLE tickets (
    id bigserial PRIMARY KEY,
    body text,
    topic text,
    status text,
    remarks text,
    contact_id bigint NOT NULL REFERENCES contacts (id) ON DELETE CASCADE,
    user_id bigint REFERENCES users (id) ON DELETE SET NULL,
    organization_id bigint NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    inserted_at timestamp(0) NOT NULL,
    updated_at timestamp(0) NOT NULL
);

CREATE TABLE contacts_groups (
    id bigserial PRIMARY KEY,
    contact_id bigint NOT NULL REFERENCES contacts (id) ON DELETE CASCADE,
    group_id bigint NOT NULL REFERENCES groups (id) ON DELETE CASCADE,
    organization_id bigint NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    inserted_at timestamp(0) DEFAULT '2021-01-01 00:00:00'::timestamp NOT NULL,
    updated_at timestamp(0) DEFAULT '2021-01-01 00:00:00'::timestamp NOT NULL
);
CREATE UNIQUE INDEX contacts_groups_contact_id_group_id_index ON contacts_groups (contact_id, group_id);

CREATE TABLE contacts_tags (
    id bigserial PRIMARY KEY,
    contact_id bigint NOT NULL REFERENCES contacts (id) ON DELETE CASCADE,
    tag_id bigint NOT NULL REFERENCES tags (id) ON DELETE CASCADE,
    value varchar(255),
    organization_id bigint NOT NULL REFERENCES organizations (id) ON DELETE CASCADE
);
CREATE UNIQUE INDEX contacts_tags_contact_id_tag_id_index ON contacts_tags (contact_id, tag_id);

CREATE TABLE contacts_fields (
    id bigserial PRIMARY KEY,
    name varchar(255),
    shortcode varchar(255),
    value_type contact_field_value_type_enum,
    scope contact_field_scope_enum,
    organization_id bigint NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    inserted_at timestamp(0) NOT NULL,
    updated_at timestamp(0) NOT NULL
);
CREATE UNIQUE INDEX contacts_fields_name_organization_id_index ON contacts_fields (name, organization_id);
CREATE UNIQUE INDEX contacts_fields_shortcode_organization_id_index ON contacts_fields (shortcode, organization_id);

CREATE TABLE locations (
    id bigserial PRIMARY KEY,
    contact_id bigint NOT NULL REFERENCES contacts (id) ON DELETE CASCADE,
    message_id bigint NOT NULL REFERENCES messages (id) ON DELETE CASCADE,
    longitude double precision NOT NULL,
    latitude double precision NOT NULL,
    inserted_at timestamp(0) NOT NULL,
    updated_at timestamp(0) NOT NULL,
    organization_id bigint NOT NULL REFERENCES organizations (id) ON DELETE CASCADE
);
CREATE INDEX locations_message_id_index ON locations (message_id);

CREATE TABLE stats (
    id bigserial PRIMARY KEY,
    contacts integer,
    active integer,
    optin integer,
    optout integer,
    messages integer,
    inbound integer,
    outbound integer,
    hsm integer,
    flows_started integer,
    flows_completed integer,
    users integer,
    period varchar(255),
    date date,
    hour integer,
    organization_id bigint NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    inserted_at timestamp(0) NOT NULL,
    updated_at timestamp(0) NOT NULL,
    conversations integer DEFAULT 0
);

CREATE TABLE trackers (
    id bigserial PRIMARY KEY,
    period varchar(255),
    date date,
    counts jsonb,
    organization_id bigint NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    inserted_at timestamp(0) NOT NULL,
    updated_at timestamp(0) NOT NULL
);
CREATE UNIQUE INDEX trackers_date_period_organization_id_index ON trackers (date, period, organization_id);

CREATE TABLE saved_searches (
    id bigserial PRIMARY KEY,
    label varchar(255) NOT NULL,
    args jsonb,
    shortcode varchar(255),
    is_reserved boolean DEFAULT false,
    organization_id bigint NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    inserted_at timestamp(0) NOT NULL,
    updated_at timestamp(0) NOT NULL
);
CREATE UNIQUE INDEX saved_searches_shortcode_organization_id_index ON saved_searches (shortcode, organization_id);

-- The platform itself: the saas row named 'Tides' names the organization running the service,
-- whose BigQuery dataset also gets Glific's cross-organization tables (glific_bq.platform), and the
-- people who asked for a trial account (no organization of their own yet).
CREATE TABLE saas (
    id bigserial PRIMARY KEY,
    name varchar(255),
    organization_id bigint REFERENCES organizations (id) ON DELETE CASCADE,
    phone varchar(255),
    stripe_ids jsonb DEFAULT '[]'::jsonb,
    tax_rates jsonb DEFAULT '[]'::jsonb,
    inserted_at timestamp(0) NOT NULL,
    updated_at timestamp(0) NOT NULL,
    email varchar(255),
    isv_credentials jsonb DEFAULT '{}'::jsonb
);

CREATE TABLE trial_users (
    id bigserial PRIMARY KEY,
    username varchar(255) NOT NULL,
    email varchar(255) NOT NULL,
    phone varchar(255) NOT NULL,
    organization_name varchar(255) NOT NULL,
    otp_entered boolean DEFAULT false NOT NULL,
    inserted_at timestamp(0) NOT NULL,
    updated_at timestamp(0) NOT NULL
);
CREATE UNIQUE INDEX trial_users_phone_index ON trial_users (phone);
CREATE UNIQUE INDEX trial_users_email_index ON trial_users (email);

-- Glific's control plane for BigQuery: each organization's credential per provider (its secrets
-- a Cloak AES-GCM envelope of a JSON map: glific_bq.cloak), and the notices NGO staff see in
-- Glific's UI (the bell).
CREATE TABLE credentials (
    id bigserial PRIMARY KEY,
    keys jsonb DEFAULT '{}'::jsonb,
    secrets bytea,
    is_active boolean DEFAULT false,
    is_valid boolean DEFAULT true,
    provider_id bigint NOT NULL REFERENCES global.providers (id) ON DELETE CASCADE,
    organization_id bigint NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    inserted_at timestamp(0) NOT NULL,
    updated_at timestamp(0) NOT NULL
);
CREATE UNIQUE INDEX credentials_provider_id_organization_id_index ON credentials (provider_id, organization_id);

CREATE TABLE notifications (
    id bigserial PRIMARY KEY,
    entity jsonb DEFAULT '{}'::jsonb,
    category varchar(255),
    message text,
    severity text DEFAULT 'Error'::text,
    organization_id bigint NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    inserted_at timestamp(0) NOT NULL,
    updated_at timestamp(0) NOT NULL,
    is_read boolean DEFAULT false
);

-- Glific's watermark table, as Glific has it: no defaults for the timestamps, an integer table_id,
-- a nullable last_updated_at and only a non-unique index (glific_bq.watermarks adopts it).
CREATE TABLE bigquery_jobs (
    id bigserial PRIMARY KEY,
    "table" varchar(255),
    table_id integer,
    organization_id bigint NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    inserted_at timestamp(0) NOT NULL,
    updated_at timestamp(0) NOT NULL,
    last_updated_at timestamp
);
CREATE INDEX bigquery_jobs_organization_id_table_index ON bigquery_jobs (organization_id, "table");

-- The indexes a sync reads by: (organization_id, id) and (organization_id, <cursor>, id).
DO $$
DECLARE
    t text;
BEGIN
    FOR t IN SELECT c.relname FROM pg_class c JOIN pg_attribute a ON a.attrelid = c.oid
             WHERE c.relnamespace = 'public'::regnamespace AND c.relkind = 'r'
               AND a.attname = 'organization_id' AND c.relname NOT IN ('organizations', 'bigquery_jobs', 'saas')
    LOOP
        EXECUTE format('CREATE INDEX %I ON %I (organization_id, id)', t || '_organization_id_id_index', t);
        IF EXISTS (SELECT FROM pg_attribute WHERE attrelid = t::regclass AND attname = 'updated_at') THEN
            EXECUTE format('CREATE INDEX %I ON %I (organization_id, updated_at, id)',
                           t || '_organization_id_updated_at_id_index', t);
        END IF;
    END LOOP;
END $$;
CREATE INDEX flows_organization_id_inserted_at_id_index ON flows (organization_id, inserted_at, id);
CREATE INDEX contact_histories_organization_id_inserted_at_id_index ON contact_histories (organization_id, inserted_at, id);
-- The platform organization's stats_all and trackers_all read every organization's rows by (cursor, id).
CREATE INDEX stats_inserted_at_id_index ON stats (inserted_at, id);
CREATE INDEX trackers_updated_at_id_index ON trackers (updated_at, id);

-- ---------------------------------------------------------------------------------------------
-- Triggers: the row changes Glific makes in the database rather than in the application.
-- ---------------------------------------------------------------------------------------------

-- The clock of the triggers: UTC wall clock of the transaction, as in Glific's triggers, unless
-- glific_bq.clock pins it (a seed writing the past; never set in production).
CREATE FUNCTION glific_clock() RETURNS timestamp LANGUAGE sql STABLE AS $$
    SELECT COALESCE(NULLIF(current_setting('glific_bq.clock', true), '')::timestamp,
                    CURRENT_TIMESTAMP AT TIME ZONE 'UTC')
$$;

-- organizations AFTER INSERT: organization_id mirrors id.
CREATE FUNCTION update_organization_id() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE organizations SET organization_id = id WHERE organization_id IS DISTINCT FROM id;
    RETURN NULL;
END $$;
CREATE TRIGGER update_organization_id_trigger AFTER INSERT ON organizations
    FOR EACH ROW EXECUTE FUNCTION update_organization_id();

-- messages BEFORE INSERT: numbers the message within its contact (or group), takes the contact's
-- active profile, resolves the replied-to message, and moves the contact's (or group's)
-- last-communication columns. Like Glific's trigger, the contact's updated_at moves too.
CREATE FUNCTION message_before_insert_callback() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    at timestamp := glific_clock();
    inbound boolean := NEW.flow = 'inbound';
BEGIN
    IF NEW.group_id > 0 AND NEW.sender_id = NEW.receiver_id THEN
        UPDATE groups SET last_message_number = COALESCE(last_message_number, 0) + 1, last_communication_at = at
        WHERE id = NEW.group_id RETURNING last_message_number INTO NEW.message_number;
        RETURN NEW;
    END IF;
    IF inbound AND NEW.context_id IS NOT NULL THEN
        SELECT id INTO NEW.context_message_id FROM messages
        WHERE bsp_message_id = NEW.context_id AND organization_id = NEW.organization_id;
    END IF;
    UPDATE contacts SET
        last_message_number = COALESCE(last_message_number, 0) + 1,
        last_communication_at = at,
        last_message_at = CASE WHEN inbound THEN at ELSE last_message_at END,
        is_org_read = CASE WHEN inbound THEN false ELSE is_org_read END,
        is_org_replied = NOT inbound,
        is_contact_replied = inbound,
        updated_at = at
    WHERE id = NEW.contact_id AND organization_id = NEW.organization_id
    RETURNING last_message_number, active_profile_id INTO NEW.message_number, NEW.profile_id;
    RETURN NEW;
END $$;
CREATE TRIGGER message_before_insert_trigger BEFORE INSERT ON messages
    FOR EACH ROW EXECUTE FUNCTION message_before_insert_callback();

-- messages AFTER INSERT: the organization's last communication; an inbound message joins its
-- contact's session (the previous inbound message's session_uuid if it came within the
-- organization's session_limit minutes, else a new one). Neither update touches updated_at.
CREATE FUNCTION message_after_insert_callback() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    at timestamp := glific_clock();
    session uuid;
BEGIN
    UPDATE organizations SET last_communication_at = at WHERE id = NEW.organization_id;
    IF NEW.flow = 'inbound' THEN
        SELECT m.session_uuid INTO session FROM messages m JOIN organizations o ON o.id = m.organization_id
        WHERE m.contact_id = NEW.contact_id AND m.organization_id = NEW.organization_id AND m.flow = 'inbound'
          AND m.id <> NEW.id AND m.inserted_at > NEW.inserted_at - make_interval(mins => COALESCE(o.session_limit, 60))
        ORDER BY m.id DESC LIMIT 1;
        UPDATE messages SET session_uuid = COALESCE(session, gen_random_uuid()) WHERE id = NEW.id;
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER message_after_insert_trigger AFTER INSERT ON messages
    FOR EACH ROW EXECUTE FUNCTION message_after_insert_callback();

-- contacts_groups and contacts_tags: a contact's collections and tags changed, so did the contact.
CREATE FUNCTION update_contact_updated_at() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE contacts SET updated_at = glific_clock()
    WHERE id = CASE WHEN TG_OP = 'DELETE' THEN OLD.contact_id ELSE NEW.contact_id END;
    RETURN NULL;
END $$;
CREATE TRIGGER update_contact_updated_at_trigger AFTER INSERT OR UPDATE OR DELETE ON contacts_groups
    FOR EACH ROW EXECUTE FUNCTION update_contact_updated_at();
CREATE TRIGGER update_contact_updated_at_on_tagging_trigger AFTER INSERT OR UPDATE OR DELETE ON contacts_tags
    FOR EACH ROW EXECUTE FUNCTION update_contact_updated_at();

-- messages_tags: a message's tags changed, so did the message.
CREATE FUNCTION update_message_updated_at() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE messages SET updated_at = glific_clock()
    WHERE id = CASE WHEN TG_OP = 'DELETE' THEN OLD.message_id ELSE NEW.message_id END;
    RETURN NULL;
END $$;
CREATE TRIGGER update_message_updated_at_trigger AFTER INSERT OR UPDATE OR DELETE ON messages_tags
    FOR EACH ROW EXECUTE FUNCTION update_message_updated_at();

-- flow_results, flow_contexts, contact_histories AFTER INSERT: the contact's active profile.
CREATE FUNCTION update_profile_id_from_contact() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE format('UPDATE %I SET profile_id = (SELECT active_profile_id FROM contacts WHERE id = $1) WHERE id = $2',
                   TG_TABLE_NAME)
    USING NEW.contact_id, NEW.id;
    RETURN NULL;
END $$;
CREATE TRIGGER update_profile_id_on_new_flow_result AFTER INSERT ON flow_results
    FOR EACH ROW EXECUTE FUNCTION update_profile_id_from_contact();
CREATE TRIGGER update_profile_id_on_new_flow_context AFTER INSERT ON flow_contexts
    FOR EACH ROW EXECUTE FUNCTION update_profile_id_from_contact();
CREATE TRIGGER update_profile_id_on_new_contact_history AFTER INSERT ON contact_histories
    FOR EACH ROW EXECUTE FUNCTION update_profile_id_from_contact();

-- contact_histories AFTER INSERT: a contact keeps its 25 newest history rows.
CREATE FUNCTION remove_old_history() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM contact_histories WHERE id IN (
        SELECT id FROM (
            SELECT id, row_number() OVER (ORDER BY updated_at DESC) AS position
            FROM contact_histories WHERE contact_id = NEW.contact_id AND id <> NEW.id
        ) ranked WHERE position >= 25);
    RETURN NEW;
END $$;
CREATE TRIGGER remove_old_history_trigger AFTER INSERT ON contact_histories
    FOR EACH ROW EXECUTE FUNCTION remove_old_history();

-- flow_revisions AFTER INSERT: the newest revision of a flow is number 0, older ones count up.
CREATE FUNCTION update_flow_revision_number() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE flow_revisions SET revision_number = revision_number + 1 WHERE flow_id = NEW.flow_id AND id < NEW.id;
    RETURN NEW;
END $$;
CREATE TRIGGER update_flow_revision_number_trigger AFTER INSERT ON flow_revisions
    FOR EACH ROW EXECUTE FUNCTION update_flow_revision_number();

-- tags: ancestors lists a tag's ancestors, root first (recomputed for every tag, as Glific does).
CREATE FUNCTION update_tag_ancestors() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    WITH RECURSIVE lineage AS (
        SELECT id, ARRAY[]::bigint[] AS ancestors FROM tags WHERE parent_id IS NULL
        UNION
        SELECT child.id, parent.ancestors || parent.id
        FROM tags child JOIN lineage parent ON parent.id = child.parent_id
    )
    UPDATE tags SET ancestors = lineage.ancestors FROM lineage
    WHERE lineage.id = tags.id AND tags.ancestors IS DISTINCT FROM lineage.ancestors;
    RETURN NULL;
END $$;
CREATE TRIGGER insert_tag_ancestors_trigger AFTER INSERT ON tags
    FOR EACH STATEMENT EXECUTE FUNCTION update_tag_ancestors();
CREATE TRIGGER delete_tag_ancestors_trigger AFTER DELETE ON tags
    FOR EACH STATEMENT EXECUTE FUNCTION update_tag_ancestors();
CREATE TRIGGER update_tag_ancestors_trigger AFTER UPDATE OF parent_id ON tags
    FOR EACH STATEMENT EXECUTE FUNCTION update_tag_ancestors();
