-- Every change of a container's settings is told to every node, whoever
-- makes it (the API, the garbage collector, snf-manage, plain SQL):
-- NOTIFY pithos_containers '<account>/<container>', delivered at commit
-- (and never for a transaction rolled back).  Nodes keep the settings in
-- memory and drop them when told (snfd.pithos.settings_cache).  The
-- settings are a container's node, its policy (pithos_policy), metadata
-- (pithos_node_meta) and the sharing of its own path (pithos_permissions);
-- never its statistics.  A container path holds exactly one "/".

CREATE FUNCTION pithos_notify_container(path text) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    IF path ~ '^[^/]+/[^/]+$' THEN
        PERFORM pg_notify('pithos_containers', path);
    END IF;
END $$;

-- pithos_policy, pithos_node_meta: rows of a node, whose path is looked
-- up (a node deleted with its rows is told of by its own trigger).
CREATE FUNCTION pithos_node_setting_changed() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP <> 'INSERT' THEN
        PERFORM pithos_notify_container((SELECT n.path FROM pithos_nodes n
                                         WHERE n.node = OLD.node));
    END IF;
    IF TG_OP <> 'DELETE' THEN
        PERFORM pithos_notify_container((SELECT n.path FROM pithos_nodes n
                                         WHERE n.node = NEW.node));
    END IF;
    RETURN NULL;
END $$;

-- pithos_nodes, pithos_permissions: rows of a path.
CREATE FUNCTION pithos_container_path_changed() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP <> 'INSERT' THEN
        PERFORM pithos_notify_container(OLD.path);
    END IF;
    IF TG_OP <> 'DELETE' THEN
        PERFORM pithos_notify_container(NEW.path);
    END IF;
    RETURN NULL;
END $$;

CREATE TRIGGER pithos_policy_notify
    AFTER INSERT OR UPDATE OR DELETE ON pithos_policy
    FOR EACH ROW EXECUTE FUNCTION pithos_node_setting_changed();

CREATE TRIGGER pithos_node_meta_notify
    AFTER INSERT OR UPDATE OR DELETE ON pithos_node_meta
    FOR EACH ROW EXECUTE FUNCTION pithos_node_setting_changed();

-- Objects' rows are the many: the WHEN clauses keep them from calling
-- any function.
CREATE TRIGGER pithos_nodes_created_notify
    AFTER INSERT ON pithos_nodes
    FOR EACH ROW WHEN (NEW.path ~ '^[^/]+/[^/]+$')
    EXECUTE FUNCTION pithos_container_path_changed();

CREATE TRIGGER pithos_nodes_deleted_notify
    AFTER DELETE ON pithos_nodes
    FOR EACH ROW WHEN (OLD.path ~ '^[^/]+/[^/]+$')
    EXECUTE FUNCTION pithos_container_path_changed();

CREATE TRIGGER pithos_nodes_moved_notify
    AFTER UPDATE OF path ON pithos_nodes
    FOR EACH ROW WHEN (OLD.path ~ '^[^/]+/[^/]+$' OR NEW.path ~ '^[^/]+/[^/]+$')
    EXECUTE FUNCTION pithos_container_path_changed();

CREATE TRIGGER pithos_permissions_created_notify
    AFTER INSERT ON pithos_permissions
    FOR EACH ROW WHEN (NEW.path ~ '^[^/]+/[^/]+$')
    EXECUTE FUNCTION pithos_container_path_changed();

CREATE TRIGGER pithos_permissions_deleted_notify
    AFTER DELETE ON pithos_permissions
    FOR EACH ROW WHEN (OLD.path ~ '^[^/]+/[^/]+$')
    EXECUTE FUNCTION pithos_container_path_changed();

CREATE TRIGGER pithos_permissions_changed_notify
    AFTER UPDATE ON pithos_permissions
    FOR EACH ROW WHEN (OLD.path ~ '^[^/]+/[^/]+$' OR NEW.path ~ '^[^/]+/[^/]+$')
    EXECUTE FUNCTION pithos_container_path_changed();
