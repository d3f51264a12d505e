# frozen_string_literal: true

require_relative "helper"

# Core errors reach Ruby as data: one exception class per kind the core declares, with each of
# the kind's fields as an attribute; and a real error arrives with its fields set.
class TestErrors < Minitest::Test
  def test_every_core_error_kind_has_a_class_with_its_fields
    kinds = ConductorWorker::Native.error_kinds
    refute_empty kinds
    kinds.each do |kind, fields|
      cls = ConductorWorker.const_get(kind)
      assert_operator cls, :<, ConductorWorker::Error, kind
      [*fields, "retryable"].each do |field|
        assert cls.method_defined?(field), "#{kind} has no attribute #{field}"
      end
    end
  end

  def test_a_core_error_arrives_with_its_fields
    error = assert_raises(ConductorWorker::ConfigError) do
      ConductorWorker::Native.check_worker_options("t", { concurrency: 0 })
    end
    assert_equal ['worker "t" option concurrency', "0", false], [error.setting, error.value, error.retryable]
  end
end
