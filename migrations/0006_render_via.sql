-- How the request that caused each render reached Kiln: through Kiln's edge (a bot on a domain whose
-- traffic comes to Kiln, or the dashboard's warms, previews and parity checks) or through the render
-- service (a customer's own server asking by URL with a service token). Renders copied before the
-- workers recorded it all came through the edge.
ALTER TABLE renders
    ADD COLUMN via text NOT NULL DEFAULT 'edge' CONSTRAINT renders_via_check CHECK (via IN ('edge', 'service'));
