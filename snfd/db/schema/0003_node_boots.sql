-- Each start of a node is a boot of its own: requests in flight belong to a
-- boot, and die with it.  A commission a charging service issued names its
-- boot (snfd.quota.serials), so that reconciliation can settle at once the
-- commissions of a boot that is over (the node restarted, stopped or stopped
-- beating) rather than after a grace period.
ALTER TABLE nodes ADD COLUMN boot text;
