-- One database per Atelier service (each owns its tables; see docs/architecture): run once, by the
-- postgres image, when its volume is empty.
CREATE DATABASE atelier_data;
CREATE DATABASE atelier_registry;
CREATE DATABASE atelier_scheduler;
CREATE DATABASE atelier_inference;
CREATE DATABASE atelier_monitor;
CREATE DATABASE atelier_iam;
