-- FreshPoC_E2E's lineage graph store: one dbt project's nodes and edges, written by the writer
-- service (latest run wins) and read by the query and reporting services.
CREATE TABLE freshpoc_nodes (
    project      text NOT NULL,
    node_id      text NOT NULL,
    node_type    text NOT NULL CHECK (node_type IN ('model', 'seed', 'source')),
    name         text NOT NULL,
    path         text NOT NULL,
    description  text NOT NULL DEFAULT '',
    columns      jsonb NOT NULL DEFAULT '[]'::jsonb,
    run_id       text NOT NULL,
    updated_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (project, node_id)
);

CREATE TABLE freshpoc_edges (
    project    text NOT NULL,
    parent_id  text NOT NULL,
    child_id   text NOT NULL,
    run_id     text NOT NULL,
    PRIMARY KEY (project, parent_id, child_id),
    FOREIGN KEY (project, parent_id) REFERENCES freshpoc_nodes (project, node_id) ON DELETE CASCADE,
    FOREIGN KEY (project, child_id) REFERENCES freshpoc_nodes (project, node_id) ON DELETE CASCADE
);
CREATE INDEX freshpoc_edges_by_child ON freshpoc_edges (project, child_id);
