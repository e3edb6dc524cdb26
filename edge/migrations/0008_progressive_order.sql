ALTER TABLE `jobs` ADD `frame_order` text DEFAULT 'sequential' NOT NULL;--> statement-breakpoint
ALTER TABLE `tasks` ADD `frame_step` integer DEFAULT 1 NOT NULL;