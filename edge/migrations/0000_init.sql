CREATE TABLE `frames` (
	`job_id` text NOT NULL,
	`frame` integer NOT NULL,
	`task_id` text,
	`worker_id` text,
	`r2_key` text NOT NULL,
	`size` integer NOT NULL,
	`sha256` text NOT NULL,
	`content_type` text NOT NULL,
	`render_ms` integer,
	`created_at` integer NOT NULL,
	PRIMARY KEY(`job_id`, `frame`),
	FOREIGN KEY (`job_id`) REFERENCES `jobs`(`id`) ON UPDATE no action ON DELETE cascade
);
--> statement-breakpoint
CREATE TABLE `job_blocklist` (
	`job_id` text NOT NULL,
	`worker_id` text NOT NULL,
	`failures` integer DEFAULT 0 NOT NULL,
	`last_reason` text,
	`updated_at` integer NOT NULL,
	PRIMARY KEY(`job_id`, `worker_id`),
	FOREIGN KEY (`job_id`) REFERENCES `jobs`(`id`) ON UPDATE no action ON DELETE cascade
);
--> statement-breakpoint
CREATE TABLE `jobs` (
	`id` text PRIMARY KEY NOT NULL,
	`name` text NOT NULL,
	`status` text DEFAULT 'queued' NOT NULL,
	`priority` integer DEFAULT 50 NOT NULL,
	`start_frame` integer NOT NULL,
	`end_frame` integer NOT NULL,
	`chunk_size` integer,
	`next_frame` integer NOT NULL,
	`blend_file` text NOT NULL,
	`blend_sha256` text NOT NULL,
	`blend_size` integer NOT NULL,
	`max_attempts` integer DEFAULT 3 NOT NULL,
	`max_node_failures` integer DEFAULT 2 NOT NULL,
	`completed_frames` integer DEFAULT 0 NOT NULL,
	`frame_time_ms_total` integer DEFAULT 0 NOT NULL,
	`frames_timed` integer DEFAULT 0 NOT NULL,
	`error` text,
	`warnings` text DEFAULT '[]' NOT NULL,
	`claim_token` text,
	`claim_start` integer,
	`created_at` integer NOT NULL,
	`updated_at` integer NOT NULL,
	`started_at` integer,
	`finished_at` integer
);
--> statement-breakpoint
CREATE INDEX `jobs_runnable` ON `jobs` (`status`,`priority`,`created_at`);--> statement-breakpoint
CREATE INDEX `jobs_claim_token` ON `jobs` (`claim_token`);--> statement-breakpoint
CREATE TABLE `tasks` (
	`id` text PRIMARY KEY NOT NULL,
	`job_id` text NOT NULL,
	`start_frame` integer NOT NULL,
	`end_frame` integer NOT NULL,
	`status` text NOT NULL,
	`worker_id` text,
	`lease_id` text,
	`lease_expires_at` integer,
	`attempts` integer DEFAULT 0 NOT NULL,
	`message` text,
	`failure_reason` text,
	`log_tail` text,
	`log_key` text,
	`current_frame` integer,
	`peak_mem_mb` integer,
	`created_at` integer NOT NULL,
	`updated_at` integer NOT NULL,
	FOREIGN KEY (`job_id`) REFERENCES `jobs`(`id`) ON UPDATE no action ON DELETE cascade
);
--> statement-breakpoint
CREATE INDEX `tasks_job` ON `tasks` (`job_id`,`status`);--> statement-breakpoint
CREATE INDEX `tasks_lease` ON `tasks` (`lease_id`);--> statement-breakpoint
CREATE INDEX `tasks_expiry` ON `tasks` (`status`,`lease_expires_at`);--> statement-breakpoint
CREATE TABLE `workers` (
	`id` text PRIMARY KEY NOT NULL,
	`name` text NOT NULL,
	`hostname` text,
	`blender_version` text,
	`threads` integer,
	`enabled` integer DEFAULT true NOT NULL,
	`frames_rendered` integer DEFAULT 0 NOT NULL,
	`failures` integer DEFAULT 0 NOT NULL,
	`created_at` integer NOT NULL,
	`last_seen_at` integer NOT NULL
);
