-- A warm job keeps only the first entries it left out (`skipped`, at most 100, each URL clipped to
-- 1,000 characters) and counts every one in `skipped_total`, so that a sitemap of 60,000 URLs the
-- domain excludes makes a record of a few kilobytes instead of megabytes.
ALTER TABLE warm_jobs ADD COLUMN skipped_total integer NOT NULL DEFAULT 0;

-- Jobs recorded before: every entry was kept, so the count is the list's length, and the list is
-- cut to its first 100 entries like a new job's.
UPDATE warm_jobs SET skipped_total = jsonb_array_length(skipped);
UPDATE warm_jobs
   SET skipped = (SELECT jsonb_agg(entry ORDER BY position)
                    FROM jsonb_array_elements(skipped) WITH ORDINALITY AS e(entry, position)
                   WHERE position <= 100)
 WHERE jsonb_array_length(skipped) > 100;
