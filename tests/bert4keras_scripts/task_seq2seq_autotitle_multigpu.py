#! -*- coding: utf-8 -*-
"""Port of bert4keras examples/task_seq2seq_autotitle_multigpu.py: UniLM title generation under
tf.distribute.MirroredStrategy — the model built without weights inside `strategy.scope()`
(`checkpoint_path=None, return_keras_model=False`), compiled, then
`bert.load_weights_from_checkpoint(checkpoint_path)`; fed by a generator of single samples turned into
a padded `tf.data.Dataset` with `DataGenerator.to_dataset(..., names=('Input-Token', 'Input-Segment'),
padded_batch=True)`.

Changed besides imports, paths and sizes: Adam(1e-5) -> Adam(1e-3) (a tiny random model, 2 short
epochs), './best_model.weights' -> './best_model.weights.h5'. The "THUCNews" corpus is generated (one
.txt per article, the title on the first line); the two demo texts are the original's (their characters
outside the tiny vocabulary become [UNK]). On a machine without GPUs the strategy has one replica.
Checks (not in the original): the embeddings after load_weights_from_checkpoint are the checkpoint's
rows for keep_tokens (read with tf.train.load_checkpoint); the loss falls; beam search returns str
titles of at most `autotitle.maxlen` tokens; the best weights load back to the same predictions.
"""
# bert做Seq2Seq任务，采用UNILM方案
# 介绍链接：https://kexue.fm/archives/6933
# 单机多卡版本，读者可以对照着 task_seq2seq_autotitle.py 阅读

from __future__ import print_function

import os
os.environ['TF_KERAS'] = '1'  # 必须使用tf.keras

import glob
import json
import numpy as np
from bert4keras_ext.backend import keras, K
from bert4keras_ext.layers import Loss
from bert4keras_ext.models import build_transformer_model
from bert4keras_ext.tokenizers import Tokenizer, load_vocab
from bert4keras_ext.optimizers import Adam
from bert4keras_ext.snippets import sequence_padding, open
from bert4keras_ext.snippets import DataGenerator, AutoRegressiveDecoder
from keras.models import Model
import tensorflow as tf  # 导入tf，备用

import tiny

np.random.seed(42)
keras.utils.set_random_seed(42)

# 基本参数
maxlen = 48
batch_size = 16
steps_per_epoch = 6
epochs = 2

# bert配置
config_path, checkpoint_path, dict_path = tiny.bert_paths()

# ---- a tiny "THUCNews": <dir>/<category>/<id>.txt, first line the title, then the content ---------
_chars = tiny.vocab_chars(dict_path)[:60]
for _category in [u'财经', u'教育']:
    os.makedirs(tiny.data_path('THUCNews_multigpu/' + _category), exist_ok=True)
    for _i in range(48):
        _content = ''.join(np.random.choice(_chars, np.random.randint(16, 30))) + u'。'
        with open(tiny.data_path('THUCNews_multigpu/%s/%d.txt' % (_category, _i)), 'w', encoding='utf-8') as f:
            f.write(_content[:4] + u'\n' + _content)

# 训练样本。THUCNews数据集，每个样本保存为一个txt。
txts = glob.glob(tiny.data_path('THUCNews_multigpu/*/*.txt'))

# 加载并精简词表，建立分词器
token_dict, keep_tokens = load_vocab(
    dict_path=dict_path,
    simplified=True,
    startswith=['[PAD]', '[UNK]', '[CLS]', '[SEP]'],
)
tokenizer = Tokenizer(token_dict, do_lower_case=True)


class data_generator(DataGenerator):
    """数据生成器
    （每次只需要返回一条样本）
    """
    def __iter__(self, random=False):
        for is_end, txt in self.sample(random):
            text = open(txt, encoding='utf-8').read()
            text = text.split('\n')
            if len(text) > 1:
                title = text[0]
                content = '\n'.join(text[1:])
                token_ids, segment_ids = tokenizer.encode(
                    content, title, maxlen=maxlen
                )
                # 返回一条样本
                yield token_ids, segment_ids


class CrossEntropy(Loss):
    """交叉熵作为loss，并mask掉输入部分
    """
    def compute_loss(self, inputs, mask=None):
        y_true, y_mask, y_pred = inputs
        y_true = y_true[:, 1:]  # 目标token_ids
        y_mask = y_mask[:, 1:]  # segment_ids，刚好指示了要预测的部分
        y_pred = y_pred[:, :-1]  # 预测序列，错开一位
        loss = K.sparse_categorical_crossentropy(y_true, y_pred)
        loss = K.sum(loss * y_mask) / K.sum(y_mask)
        return loss


strategy = tf.distribute.MirroredStrategy()  # 建立单机多卡策略

with strategy.scope():  # 调用该策略

    bert = build_transformer_model(
        config_path,
        checkpoint_path=None,  # 此时可以不加载预训练权重
        application='unilm',
        keep_tokens=keep_tokens,  # 只保留keep_tokens中的字，精简原字表
        return_keras_model=False,  # 返回bert4keras类，而不是keras模型
    )

    model = bert.model  # 这个才是keras模型
    output = CrossEntropy(2)(model.inputs + model.outputs)

    model = Model(model.inputs, output)
    model.compile(optimizer=Adam(1e-3))
    model.summary()
    bert.load_weights_from_checkpoint(checkpoint_path)  # 必须最后才加载预训练权重


class AutoTitle(AutoRegressiveDecoder):
    """seq2seq解码器
    """
    @AutoRegressiveDecoder.wraps(default_rtype='probas')
    def predict(self, inputs, output_ids, states):
        token_ids, segment_ids = inputs
        token_ids = np.concatenate([token_ids, output_ids], 1)
        segment_ids = np.concatenate([segment_ids, np.ones_like(output_ids)], 1)
        return self.last_token(model).predict([token_ids, segment_ids])

    def generate(self, text, topk=1):
        max_c_len = maxlen - self.maxlen
        token_ids, segment_ids = tokenizer.encode(text, maxlen=max_c_len)
        output_ids = self.beam_search([token_ids, segment_ids],
                                      topk=topk)  # 基于beam search
        return tokenizer.decode(output_ids)


autotitle = AutoTitle(start_id=None, end_id=tokenizer._token_end_id, maxlen=8)


def just_show():
    s1 = u'夏天来临，皮肤在强烈紫外线的照射下，晒伤不可避免，因此，晒后及时修复显得尤为重要，否则可能会造成长期伤害。专家表示，选择晒后护肤品要慎重，芦荟凝胶是最安全，有效的一种选择，晒伤严重者，还请及 时 就医 。'
    s2 = u'8月28日，网络爆料称，华住集团旗下连锁酒店用户数据疑似发生泄露。从卖家发布的内容看，数据包含华住旗下汉庭、禧玥、桔子、宜必思等10余个品牌酒店的住客信息。泄露的信息包括华住官网注册资料、酒店入住登记的身份信息及酒店开房记录，住客姓名、手机号、邮箱、身份证号、登录账号密码等。卖家对这个约5亿条数据打包出售。第三方安全平台威胁猎人对信息出售者提供的三万条数据进行验证，认为数据真实性非常高。当天下午 ，华 住集 团发声明称，已在内部迅速开展核查，并第一时间报警。当晚，上海警方消息称，接到华住集团报案，警方已经介入调查。'
    for s in [s1, s2]:
        print(u'生成标题:', autotitle.generate(s))
    print()


# a fixed batch whose predictions are recorded whenever the best weights are saved (for the reload check)
probe_inputs = sequence_padding([tokenizer.encode(open(t, encoding='utf-8').read(), maxlen=maxlen)[0]
                                 for t in txts[:8]])
probe_inputs = [probe_inputs, np.zeros_like(probe_inputs)]


class Evaluator(keras.callbacks.Callback):
    """评估与保存
    """
    def __init__(self):
        self.lowest = 1e10

    def on_epoch_end(self, epoch, logs=None):
        # 保存最优
        if logs['loss'] <= self.lowest:
            self.lowest = logs['loss']
            model.save_weights('./best_model.weights.h5')
            self.best_probe = model.predict(probe_inputs)
        # 演示效果
        just_show()


if __name__ == '__main__':

    # ---- check (not in the original): the checkpoint was loaded after compile, keep_tokens applied ----
    reader = tf.train.load_checkpoint(checkpoint_path)
    expected = reader.get_tensor('bert/embeddings/word_embeddings')[keep_tokens]
    assert np.array_equal(model.get_layer('Embedding-Token').get_weights()[0], expected)
    assert strategy.num_replicas_in_sync >= 1

    evaluator = Evaluator()
    train_generator = data_generator(txts, batch_size)
    dataset = train_generator.to_dataset(
        types=('float32', 'float32'),
        shapes=([None], [None]),  # 配合后面的padded_batch=True，实现自动padding
        names=('Input-Token', 'Input-Segment'),
        padded_batch=True
    )  # 数据要转为tf.data.Dataset格式，names跟输入层的名字对应

    history = model.fit(
        dataset,
        steps_per_epoch=steps_per_epoch,
        epochs=epochs,
        callbacks=[evaluator]
    )

    # ---- checks of the outcome (not in the original) ----
    losses = history.history['loss']
    assert losses[-1] < losses[0], 'loss did not fall: %s' % losses
    content = open(txts[1], encoding='utf-8').read().split('\n', 1)[1]
    titles = [autotitle.generate(content), autotitle.generate(content, topk=3)]
    for title in titles:
        assert isinstance(title, str), title
        assert len(tokenizer.tokenize(title)) - 2 <= autotitle.maxlen, title

    model.load_weights('./best_model.weights.h5')
    assert np.allclose(model.predict(probe_inputs), evaluator.best_probe, atol=1e-5)
    print('RESULT', json.dumps({
        'replicas': strategy.num_replicas_in_sync,
        'loss_first': float(losses[0]), 'loss_last': float(losses[-1]),
        'title_greedy': titles[0], 'title_beam3': titles[1],
    }, ensure_ascii=False))

else:

    model.load_weights('./best_model.weights.h5')
