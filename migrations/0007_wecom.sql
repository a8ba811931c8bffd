-- WeCom (企业微信) for group members and employers: each customer's userid in the
-- insurer's WeCom (issue 16.2).
ALTER TABLE customers ADD COLUMN wecom_userid text;
