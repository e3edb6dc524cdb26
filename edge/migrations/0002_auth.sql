CREATE TABLE `rate_limits` (
	`key` text PRIMARY KEY NOT NULL,
	`window_start` integer NOT NULL,
	`count` integer NOT NULL
);
--> statement-breakpoint
ALTER TABLE `frames` ADD `preview_key` text;--> statement-breakpoint
ALTER TABLE `jobs` ADD `webhook_url` text;--> statement-breakpoint
ALTER TABLE `jobs` ADD `webhook_state` text;--> statement-breakpoint
ALTER TABLE `jobs` ADD `webhook_attempts` integer DEFAULT 0 NOT NULL;--> statement-breakpoint
ALTER TABLE `jobs` ADD `webhook_last_error` text;--> statement-breakpoint
ALTER TABLE `jobs` ADD `webhook_updated_at` integer;--> statement-breakpoint
ALTER TABLE `jobs` ADD `webhook_delivered_at` integer;--> statement-breakpoint
CREATE INDEX `jobs_webhook_state` ON `jobs` (`webhook_state`);--> statement-breakpoint
ALTER TABLE `workers` ADD `devices` text DEFAULT '[]' NOT NULL;--> statement-breakpoint
ALTER TABLE `workers` ADD `credential_hash` text;--> statement-breakpoint
CREATE UNIQUE INDEX `workers_credential` ON `workers` (`credential_hash`);