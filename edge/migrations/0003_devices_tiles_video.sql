ALTER TABLE `jobs` ADD `device` text DEFAULT 'any' NOT NULL;--> statement-breakpoint
ALTER TABLE `jobs` ADD `tags` text DEFAULT '[]' NOT NULL;--> statement-breakpoint
ALTER TABLE `jobs` ADD `tiles` integer;--> statement-breakpoint
ALTER TABLE `jobs` ADD `preview_video` integer DEFAULT false NOT NULL;--> statement-breakpoint
ALTER TABLE `tasks` ADD `kind` text DEFAULT 'render' NOT NULL;--> statement-breakpoint
ALTER TABLE `tasks` ADD `tile_index` integer;--> statement-breakpoint
ALTER TABLE `tasks` ADD `output_key` text;--> statement-breakpoint
ALTER TABLE `tasks` ADD `output_size` integer;--> statement-breakpoint
ALTER TABLE `tasks` ADD `output_sha256` text;--> statement-breakpoint
CREATE INDEX `tasks_job_kind` ON `tasks` (`job_id`,`kind`);--> statement-breakpoint
ALTER TABLE `workers` ADD `backends` text DEFAULT '["cpu"]' NOT NULL;--> statement-breakpoint
ALTER TABLE `workers` ADD `tags` text DEFAULT '[]' NOT NULL;--> statement-breakpoint
ALTER TABLE `workers` ADD `task_kinds` text DEFAULT '["render"]' NOT NULL;