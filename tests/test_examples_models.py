"""The ALBERT fine-tuning and WoBERT feature-extraction examples run in their no-argument mode."""
import pytest

from conftest import load_example


def test_task_sentiment_albert_runs(capsys):
    example = load_example('task_sentiment_albert')
    results = example.main(['--epochs', '2', '--num-train', '600', '--verbose', '0'])
    out = capsys.readouterr().out
    assert 'best_val_acc' in out and 'test_acc' in out
    assert results['best_val_acc'] >= 0.75  # balanced classes: chance is 0.5


def test_task_sentiment_albert_unshared_has_more_parameters():
    example = load_example('task_sentiment_albert')
    shared = example.main(['--epochs', '1', '--num-train', '64', '--verbose', '0'])
    unshared = example.main(['--epochs', '1', '--num-train', '64', '--verbose', '0', '--unshared'])
    block = 4 * (128 * 128 + 128) + 4 * 128 + (128 * 256 + 256) + (256 * 128 + 128)
    assert unshared['trainable_params'] - shared['trainable_params'] == 3 * block


def test_wobert_feature_extraction_runs(capsys):
    pytest.importorskip('jieba', reason='jieba (the wobert extra) is not installed')
    example = load_example('basic_extract_features_wobert')
    results = example.main([])
    out = capsys.readouterr().out
    assert '自然语言' in out
    first = results['语言模型是自然语言处理的基础']
    assert first['tokens'] == ['[CLS]', '语言', '模型', '是', '自然语言', '处理', '的', '基础', '[SEP]']
    assert first['features_shape'] == (9, 64)
