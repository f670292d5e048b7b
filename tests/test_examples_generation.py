"""The generation examples (UniLM titles, causal LM, Gibbs sampling via MLM) in their no-argument mode,
with reduced sizes, plus their in-graph losses against numpy."""
import numpy as np
import pytest

from conftest import load_example


def _softmax(x):
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def test_seq2seq_loss_counts_only_the_target_part():
    example = load_example('task_seq2seq_autotitle')
    rng = np.random.RandomState(0)
    # [CLS] a b [SEP] | t1 t2 [SEP] | pad pad, vocab 9
    token_ids = np.array([[1, 4, 5, 2, 6, 7, 2, 0, 0], [1, 4, 2, 8, 2, 0, 0, 0, 0]])
    segment_ids = np.array([[0, 0, 0, 0, 1, 1, 1, 0, 0], [0, 0, 0, 1, 1, 0, 0, 0, 0]])
    probas = _softmax(rng.randn(2, 9, 9)).astype('float32')
    loss = float(np.asarray(example.CrossEntropy(2).compute_loss([token_ids, segment_ids, probas])))
    # by hand: position t predicts token t+1; only predicted tokens with segment id 1 count
    terms = [-np.log(probas[0, 3, 6]), -np.log(probas[0, 4, 7]), -np.log(probas[0, 5, 2]),
             -np.log(probas[1, 2, 8]), -np.log(probas[1, 3, 2])]
    assert loss == pytest.approx(np.mean(terms), rel=1e-5)


def test_language_model_loss_skips_padding():
    example = load_example('task_language_model')
    rng = np.random.RandomState(1)
    token_ids = np.array([[1, 4, 5, 2, 0], [1, 6, 2, 0, 0]])
    probas = _softmax(rng.randn(2, 5, 7)).astype('float32')
    loss = float(np.asarray(example.CrossEntropy(1).compute_loss([token_ids, probas])))
    terms = [-np.log(probas[0, 0, 4]), -np.log(probas[0, 1, 5]), -np.log(probas[0, 2, 2]),
             -np.log(probas[1, 0, 6]), -np.log(probas[1, 1, 2])]
    assert loss == pytest.approx(np.mean(terms), rel=1e-5)


def test_generated_titles_are_learnable_from_the_content():
    example = load_example('task_seq2seq_autotitle')
    for title, content in example.generate_news(200, seed=3):
        subject = next(s for s in example._SUBJECTS if title.startswith(s))
        assert subject in content and title[len(subject):] in content


def test_load_pairs(tmp_path):
    example = load_example('task_seq2seq_autotitle')
    path = tmp_path / 'train.tsv'
    path.write_text('标题一\t内容一，内容\n\n标题二\t内容\t带制表符\n', encoding='utf-8')
    assert example.load_pairs(str(path)) == [('标题一', '内容一，内容'), ('标题二', '内容\t带制表符')]
    path.write_text('只有标题\n', encoding='utf-8')
    with pytest.raises(ValueError, match='train.tsv:1'):
        example.load_pairs(str(path))


def test_task_seq2seq_autotitle_learns_titles(capsys):
    example = load_example('task_seq2seq_autotitle')
    results = example.main(['--num-train', '800', '--epochs', '3', '--num-valid', '40', '--verbose', '0'])
    out = capsys.readouterr().out
    assert 'ROUGE-1' in out and 'ROUGE-L' in out and 'BLEU' in out and 'generated:' in out
    fixed, lead = results['baseline_fixed'], results['baseline_lead']
    # a fixed title shares little with the references, and neither does the lead of the content
    assert results['rouge_l'] > fixed['rouge-l'] + 0.3 and results['rouge_l'] > lead['rouge-l'] + 0.2
    assert results['rouge_1'] >= results['rouge_2'] > fixed['rouge-2'] + 0.3
    assert results['bleu'] > fixed['bleu'] + 0.3
    # whole titles right (18 subjects × 15 events: a fixed title is right about once in 270)
    exact = np.mean([g == r for g, r in zip(results['generated'], results['references'])])
    assert exact >= 0.2


def test_task_seq2seq_autotitle_refuses_a_data_dir_without_its_files(tmp_path, capsys):
    example = load_example('task_seq2seq_autotitle')
    (tmp_path / 'train.tsv').write_text('标题\t内容\n', encoding='utf-8')
    with pytest.raises(SystemExit):  # checked before anything is built
        example.main(['--data-dir', str(tmp_path)])
    assert 'valid.tsv' in capsys.readouterr().err


def test_task_language_model_beats_a_unigram_model(capsys):
    example = load_example('task_language_model')
    results = example.main(['--num-train', '600', '--epochs', '2', '--num-valid', '100', '--samples', '2',
                            '--prompts', '房间', '快递'])
    out = capsys.readouterr().out
    assert 'held-out perplexity' in out and 'greedy:' in out and 'sample (topk 10' in out
    assert results['perplexity'] < 0.5 * results['unigram_perplexity']
    assert results['perplexity'] < results['perplexity_before'] / 20
    assert set(results['generations']) == {'房间', '快递'}
    for outputs in results['generations'].values():
        assert len(outputs['sample']) == 2 and len(outputs['greedy']) == 1
        assert all(text.startswith(prompt) for prompt, o in results['generations'].items()
                   for method in o.values() for text, _ in method)
    assert results['finished_rate'] >= 0.5
    assert results['sample_bigram_hit_rate'] > 0.6


def test_gibbs_sampling_example_samples_look_like_the_data(capsys):
    example = load_example('basic_gibbs_sampling_via_mlm')
    results = example.main(['--num-train', '800', '--mlm-epochs', '3', '--steps', '300', '--burn-in', '100',
                            '--chains', '2', '--length', '10'])
    out = capsys.readouterr().out
    assert 'burn-in' in out and 'all-[MASK] start, 10 tokens' in out
    for key in ('from_masks', 'from_sentence'):
        assert len(results[key]['samples']) == 2 * (300 - 100)
        assert results[key]['bigram_hit_rate'] > results[key]['random_bigram_hit_rate'] + 0.1
    final = np.array(results['from_masks']['final_ids'])
    assert final.shape == (2, 12)  # [CLS] + 10 tokens + [SEP] in each chain
    assert results['adapt_losses'][-1] < results['adapt_losses'][0]


def test_gibbs_sampling_example_is_reproducible():
    example = load_example('basic_gibbs_sampling_via_mlm')
    arguments = ['--no-adapt', '--num-train', '100', '--steps', '30', '--burn-in', '10', '--chains', '2', '--seed', '4']
    first, second = example.main(arguments), example.main(arguments)
    assert first['from_masks']['samples'] == second['from_masks']['samples']
    assert first['from_sentence']['samples'] == second['from_sentence']['samples']
    other = example.main(arguments[:-1] + ['5'])
    assert other['from_masks']['samples'] != first['from_masks']['samples']
