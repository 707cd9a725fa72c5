-- Rows for sql/type_zoo.sql: edge values of every column, then an update and a delete.
INSERT INTO zoo VALUES
 (1, -32768, 9223372036854775807, 1.1, 0.1, 123456789012345678901234567890.123456789, 3.14159,
  true, B'1010', B'101', 'it''s a "test" \ with backslash', 'varchar', 'ab',
  '\x00ff10'::bytea, '2024-02-29', '2024-02-29 13:14:15.123456', '2024-02-29 13:14:15.123456+05:30',
  '23:59:59.999999', '12:00:00+02', '1 year 2 months 3 days 04:05:06.789', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11',
  '{"a": [1, 2, {"b": null}]}', '{"z": 1, "a": "x"}', '<r><c>1</c></r>', '192.168.0.1/24', '10.0.0.0/8',
  '08:00:2b:01:02:03', 12.34, '(1.5,-2.25)', '((0,0),(1,1))', '{1,NULL,3}', '{"a b","c,d",NULL,"e\"f"}',
  '[1,10)', '[2024-01-01 00:00+00,2024-06-01 00:00+00)', 'happy', ROW(7, 'seven'), 42, 4294967295),
 (2, 0, -1, 'NaN', 'Infinity', 'NaN', -0.5,
  false, B'0000', B'', E'line1\nline2\ttab\r\x01 end', '', '     ',
  ''::bytea, 'infinity', '-infinity', 'infinity', '00:00', '00:00+00', '-1 days +00:00:01', '00000000-0000-0000-0000-000000000000',
  '[]', '{}', '<a/>', '::1', '::/0', 'ff:ff:ff:ff:ff:ff', -0.01, '(0,0)', '((1,2),(3,4))', '{}', '{}',
  'empty', 'empty', 'sad', ROW(NULL, ''), 1, 0),
 (3, NULL, NULL, '-Infinity', '-Infinity', 1e-20, NULL,
  NULL, NULL, NULL, 'unicode: zürich 東京 🐘', NULL, NULL,
  NULL, '0001-01-01 BC', '1999-12-31 23:59:59', '1970-01-01 00:00:00+00', NULL, NULL, NULL, NULL,
  'null', 'null', NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
  NULL, NULL, NULL, NULL, NULL, NULL);
UPDATE zoo SET txt = txt || '!' WHERE id IN (1, 2);
DELETE FROM zoo WHERE id = 3;

