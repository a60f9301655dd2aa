-- Which connector secret is current: every rotation moves it on, and connector tokens carry
-- the generation they were issued under, so a token from before a rotation stops working.
ALTER TABLE sites ADD COLUMN secret_generation integer NOT NULL DEFAULT 1 CHECK (secret_generation > 0);
