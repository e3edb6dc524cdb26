CREATE TABLE `manifest_files` (
	`manifest_sha256` text NOT NULL,
	`path` text NOT NULL,
	`blob_sha256` text NOT NULL,
	`size` integer NOT NULL,
	PRIMARY KEY(`manifest_sha256`, `path`)
);
--> statement-breakpoint
CREATE INDEX `manifest_files_blob` ON `manifest_files` (`blob_sha256`);--> statement-breakpoint
CREATE TABLE `manifests` (
	`sha256` text PRIMARY KEY NOT NULL,
	`main_blend` text NOT NULL,
	`file_count` integer NOT NULL,
	`total_bytes` integer NOT NULL,
	`created_at` integer NOT NULL,
	`checked_at` integer NOT NULL
);
--> statement-breakpoint
ALTER TABLE `jobs` ADD `input_sent_bytes` integer;