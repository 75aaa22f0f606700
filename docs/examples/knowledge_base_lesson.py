"""知识库问答 / a knowledge-base lesson: embed the course notes, find the passage closest to the
question (cosine similarity, standard library only), and ask the model with it — all through the
classroom server, so the teacher's key never appears in the student's code.

    python knowledge_base_lesson.py http://192.168.1.23:7860 math42
"""
import math
import sys

from xedullm import Client

NOTES = [
    "光合作用在叶绿体里进行，植物用光能把二氧化碳和水变成葡萄糖，并放出氧气。",
    "地球绕太阳公转一周大约是 365 天，这就是一年；地球自转一周是一天。",
    "水在 0 摄氏度结冰，在 100 摄氏度（一个标准大气压下）沸腾。",
]
QUESTION = "植物为什么需要阳光？"


def cosine(a, b):
    dot = sum(x * y for x, y in zip(a, b))
    return dot / (math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b)))


url, code = (sys.argv[1:] + ["http://127.0.0.1:7860", None])[:2]
client = Client(xedu_url=url, api_key=code)
note_vectors = client.embed(NOTES)                  # one vector per passage, in order
question_vector = client.embed(QUESTION)[0]
scores = [cosine(question_vector, v) for v in note_vectors]
best = NOTES[scores.index(max(scores))]
print("最相关的段落 / closest passage:", best)
print(client.inference(f"只根据这段资料回答问题。\n资料：{best}\n问题：{QUESTION}"))
