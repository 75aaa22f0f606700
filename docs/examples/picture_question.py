"""看图说话 / a picture question through the classroom server (the teacher picked a model that
sees, e.g. `xedullm serve -p glm -m glm-4v-flash`). A file is sent as a data: URL; an https://
address is sent as it is.

    python picture_question.py http://192.168.1.23:7860 math42 leaf.jpg
"""
import sys

from xedullm import Client

url, code, picture = sys.argv[1:4]
client = Client(xedu_url=url, api_key=code)
print(client.inference("图里是什么植物？它的叶子有什么特点？", images=[picture]))
