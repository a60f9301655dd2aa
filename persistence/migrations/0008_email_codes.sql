-- Resource sessions made with an e-mail one-time code: the method, and the address it proved.
ALTER TABLE resource_sessions DROP CONSTRAINT resource_sessions_method_check;
ALTER TABLE resource_sessions ADD CONSTRAINT resource_sessions_method_check CHECK (method IN ('sso', 'password', 'pin', 'link', 'email'));
ALTER TABLE resource_sessions ADD COLUMN email text CHECK (email IS NULL OR length(email) <= 254);
