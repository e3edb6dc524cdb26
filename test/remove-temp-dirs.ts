/** Setup of every node test file: the temp dirs it made go after its own hooks (temp-dirs.ts). */
import { afterAll } from 'vitest';
import { removeTempDirs } from './temp-dirs.ts';

afterAll(removeTempDirs);
