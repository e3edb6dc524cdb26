ALTER TABLE `jobs` ADD `max_node_losses` integer DEFAULT 5 NOT NULL;--> statement-breakpoint
ALTER TABLE `tasks` ADD `node_losses` integer DEFAULT 0 NOT NULL;--> statement-breakpoint
ALTER TABLE `tasks` ADD `failed_lease` text;--> statement-breakpoint
ALTER TABLE `tasks` ADD `failure_uncounted` integer DEFAULT 0 NOT NULL;--> statement-breakpoint
ALTER TABLE `workers` ADD `boot_id` text;