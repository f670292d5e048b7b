"""The adversarial, VAT and BERT-of-Theseus examples run end to end (tiny generated BERT, generated reviews).

Each example runs once, in-process through its `main(argv)`, with sizes cut down for the test suite;
the assertions read the metrics dict it returns and the lines it prints.
"""
from conftest import load_example

SMALL = ['--hidden-size', '32', '--maxlen', '24', '--num-eval', '64']


def check_accuracies(scores):
    assert set(scores) == {'val_acc', 'test_acc'}
    assert all(0.0 <= v <= 1.0 for v in scores.values())


def test_adversarial_example_reports_both_runs(capsys):
    example = load_example('task_sentiment_adversarial_training')
    results = example.main(['--num-train', '640', '--epochs', '2', '--num-layers', '1', '--hidden-size', '32',
                            '--maxlen', '24', '--learning-rate', '3e-3'])
    printed = capsys.readouterr().out
    check_accuracies(results['baseline'])
    check_accuracies(results['fgm'])
    assert 'without adversarial training' in printed and 'with fgm (epsilon=0.05)' in printed
    # the generated task is learnable: the plain classifier clearly beats chance (0.5) in 2 short epochs
    assert results['baseline']['val_acc'] >= 0.7, results
    assert results['fgm']['val_acc'] >= 0.6, results  # and adversarial training does not stop it learning


def test_virtual_adversarial_example_trains_on_unlabeled_batches(capsys):
    example = load_example('task_sentiment_virtual_adversarial_training')
    results = example.main(['--num-labeled', '48', '--num-unlabeled', '96', '--epochs', '2', '--num-layers', '1']
                           + SMALL)
    printed = capsys.readouterr().out
    check_accuracies(results['supervised'])
    check_accuracies(results['vat'])
    assert results['vat_steps'] == 2 * 3  # one VAT step after each of the 3 labeled batches, 2 epochs
    assert 'labeled data only' in printed and '+ VAT on unlabeled data' in printed


def test_bert_of_theseus_example_compresses(capsys):
    example = load_example('task_sentiment_bert_of_theseus')
    results = example.main(['--predecessor-layers', '2', '--successor-layers', '1', '--num-train', '192',
                            '--epochs', '1'] + SMALL)
    printed = capsys.readouterr().out
    for phase in ('predecessor', 'theseus', 'successor', 'baseline'):
        check_accuracies(results[phase])
    assert results['parameters']['successor'] < results['parameters']['predecessor']
    assert 'predecessor' in printed and 'same-size baseline' in printed
