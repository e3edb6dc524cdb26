CREATE TABLE `sweep_cursors` (
	`name` text PRIMARY KEY NOT NULL,
	`last_key` text,
	`next_pass_at` integer DEFAULT 0 NOT NULL,
	`updated_at` integer NOT NULL
);
--> statement-breakpoint
ALTER TABLE `blobs` ADD `last_used_at` integer;--> statement-breakpoint
CREATE INDEX `blobs_r2_key` ON `blobs` (`r2_key`);--> statement-breakpoint
CREATE INDEX `jobs_blend_sha256` ON `jobs` (`blend_sha256`);